"""service: see the modules below."""
