"""The compliance team's HTTP API (FastAPI) over the views, and its commands to the ledger."""
