"""modelyard: a self-hostable inference cloud for agents."""

__version__ = "0.1.0"
