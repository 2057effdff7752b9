"""custlab monitoring room."""
