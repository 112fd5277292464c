"""Limits on requests in flight per deployment, shared by every API process."""
