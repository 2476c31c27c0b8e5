"""Data: sources, cutouts and preprocessing, the prepared-HDF5 format, the DataModule."""
