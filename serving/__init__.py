"""custlab serving room."""
