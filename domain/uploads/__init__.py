"""Model uploads (BYOM): a GGUF file an account brings, from its first byte to ready."""
