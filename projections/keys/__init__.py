"""The key view authentication reads: keys by hash, and scoped keys' grants."""
