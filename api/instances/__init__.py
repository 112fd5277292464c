"""The first document's management routes: provision, poll, list, scale, destroy, models, billing."""
