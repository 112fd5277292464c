"""Where replicas run: one interface, a ``local`` implementation on this host."""
