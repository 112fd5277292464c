"""Access over HTTP: keys, grants, organisations, the catalog by plan, credits, plan limits.

``checks`` turns the pure model of permissions (``domain.access.model``) into the answers
routes give; every route that reaches a deployment, a key or an organisation asks it.
"""
