"""Data: image folders to training samples, sources (map services, rasters), synthetic ageing."""
