"""The second dialect's deployments: ``/api/v1/public/deployments`` and what hangs off it."""
