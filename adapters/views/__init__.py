"""Where views live: the same SQL on SQLite (embedded) or PostgreSQL (cluster)."""
