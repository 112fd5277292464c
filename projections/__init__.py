"""Read models built only from events, and their queries."""
