"""Reproducible performance runs of custlab beside their anchors."""
