"""Lines of JSONL bytes: the reader, raw-JSON slices, the chunked parallel engine. Imports nothing
else of the package.
"""
