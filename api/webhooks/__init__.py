"""Webhook subscriptions of a deployment (both dialects), their deliveries, re-drive and rotation."""
