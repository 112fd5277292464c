"""The HTTP edge: Litestar routes of both dialects, MCP, auth, errors."""
