"""Counting tokens (encodings, images) and money (prices), and ``file_stats``."""
