"""Where events come from: one consumer interface, the store's log or Kafka behind it."""
