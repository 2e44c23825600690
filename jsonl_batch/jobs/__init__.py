"""Jobs: the ledger, preparing inputs, the runner, its table and status."""
