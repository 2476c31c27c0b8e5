"""Files only: release-folder files, FITS, sample writers, atomic artifacts, hashes,
provenance. Builds no network and imports nothing above it."""
