"""monitoring: see the modules below."""
