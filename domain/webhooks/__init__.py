"""Webhook subscriptions: where a deployment's health events are pushed, and signed with what."""
