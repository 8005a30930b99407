"""kiroku's domain: the policy's rules as aggregates, and the ledger application."""
