"""One deployment aggregate for both dialects' instances and deployments."""
