"""Alembic runs this for every migration command (``securecomm.service.storage``): on the
connection the caller holds, inside the caller's transaction, so a schema is made or
upgraded whole or not at all."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=context.config.attributes["metadata"])
context.run_migrations()
