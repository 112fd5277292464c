"""The access view: keys' names, organisations' members, for listing and checking access."""
