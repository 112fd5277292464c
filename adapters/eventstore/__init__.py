"""Event store configuration: SQLite for the embedded default, PostgreSQL for a cluster."""
