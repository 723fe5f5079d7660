"""Alembic environment of the DODAS store (run through dodas_tasks.store.migrate, or the alembic CLI)."""
