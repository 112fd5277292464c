"""API keys: management, per-deployment inference, scoped; only hashes are kept."""
