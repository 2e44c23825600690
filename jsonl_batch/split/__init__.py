"""Splitting a batch file: the plan (cut points) and the byte-range copies."""
