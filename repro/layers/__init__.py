"""Reusable network layers (one concept per file), independent of any backbone."""
