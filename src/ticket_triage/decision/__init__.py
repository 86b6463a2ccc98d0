"""decision: see the modules below."""
