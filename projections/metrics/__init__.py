"""Usage metrics: per deployment and per model per minute, from per-request usage records."""
