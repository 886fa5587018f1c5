"""Alembic's environment: Greenroom runs the migrations itself (memory/db.py) on a connection it hands over."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
