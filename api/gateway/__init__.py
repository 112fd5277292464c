"""The inference gateway: authenticated chat routes forwarded to a deployment's replicas."""
