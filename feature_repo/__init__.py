"""custlab feature_repo room."""
