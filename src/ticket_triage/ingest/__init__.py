"""ingest: see the modules below."""
