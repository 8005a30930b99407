"""Views built from the event store (current state, audit trail, provision ledger).

Each view is a tracking recorder: its rows and its tracking position are
written in one transaction. The views arrive with the projections issue; this
package holds nothing yet.
"""
