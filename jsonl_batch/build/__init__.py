"""Building a batch file: the writer and the table inputs (CSV, TSV, JSONL, Parquet)."""
