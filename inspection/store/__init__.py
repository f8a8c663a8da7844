"""Results store (SQLAlchemy; SQLite default, PostgreSQL by URL). Torch-free."""
