"""The result store: SQL tables, Alembic migrations and the transactions the service calls."""
