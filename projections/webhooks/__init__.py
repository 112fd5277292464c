"""The webhook subscriptions view: who wants which of a deployment's (or account's) events."""
