"""Alembic's environment for both services' migrations (``env.py``); the revisions are
each service's own: ``securecomm.relay.migrations`` and ``securecomm.custodian.migrations``."""
