"""Sending webhooks: signing secrets and signatures, which destinations are allowed, the HTTP POST."""
