"""Finance's exports of the ledger: the tamper-evident chain, its formats and its checks."""
