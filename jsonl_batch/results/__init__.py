"""Results: reading them, joining them to their requests, tables, answers, costs, retry files."""
