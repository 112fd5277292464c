"""Prices and the arithmetic of charging for runtime."""
