"""Kafka group consumers that turn upstream messages into ledger commands.

They arrive with the ingest issue; this package holds nothing yet.
"""
