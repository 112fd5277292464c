"""Liveness of the API process."""
