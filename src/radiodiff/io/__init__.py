"""Files: release folders, FITS, sample writers, atomic artifacts, provenance."""
