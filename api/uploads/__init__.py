"""Model uploads (BYOM): ``POST /api/v1/public/models/upload``."""
