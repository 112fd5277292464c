"""Finance over HTTP: the chained ledger export, quotes before provisioning, reconciliation."""
