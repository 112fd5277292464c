"""Who may do what: the one model of permissions every route asks."""
