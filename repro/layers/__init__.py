"""Reusable layers shared by model families (one concept per file)."""
