"""The world: stores, Kafka, engines, placement, webhooks, local services."""
