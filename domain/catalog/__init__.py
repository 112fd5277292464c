"""What can be deployed: models, GPU types, regions, presets, plans."""
