"""Accounts: plan, prepaid credits, and what has been charged."""
