"""Request limits per key that hold across every API process (FEATURES C6, DESIGN §4.8)."""
