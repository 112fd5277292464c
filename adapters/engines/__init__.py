"""Engines: what serves a model. Every replica speaks the OpenAI HTTP API on loopback."""
