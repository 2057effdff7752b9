"""The declarative Feast repository of custlab (definitions and per-profile configs)."""
