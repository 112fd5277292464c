"""Long-running loops: relay, projection runners, meter, reconciler, dispatchers."""
