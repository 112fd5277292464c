"""Balances and the ledger: every credit and charge, with the event it came from."""
