"""The state store: what replay and view rebuilds must never touch.

Idempotency records, shown-once instance secrets, rate-limit windows and the relay's
position are not derived from events, so they cannot be rebuilt from them: they live apart
from the views (their own SQLite file; their own tables on PostgreSQL, which no rebuild
names), behind the same transaction port.
"""
