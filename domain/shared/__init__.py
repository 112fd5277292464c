"""What every context of the domain shares: the event base, errors, ids, money."""
