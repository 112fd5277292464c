"""Usage: what each inference request used and how it went."""
