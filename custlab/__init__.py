"""custlab custlab room."""
