"""The ledger's service layer, split by what the commands are about.

``base`` holds the mechanics every command shares (idempotency, retries,
batching); ``records``, ``provision`` and ``requests`` hold the commands.
``domain.application.Ledger`` puts them together.
"""
