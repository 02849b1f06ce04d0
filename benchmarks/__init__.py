"""Reproducible measurements; each script prints a table and writes JSON (see README)."""
