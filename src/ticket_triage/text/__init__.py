"""text: see the modules below."""
