"""Model uploads (BYOM): checking GGUF files, and streaming them to disk."""
