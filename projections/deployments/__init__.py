"""The deployments view both dialects' GET routes read."""
