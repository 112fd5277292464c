"""The uploads view: each model upload, its status, and the name it serves under."""
