"""custlab training room."""
