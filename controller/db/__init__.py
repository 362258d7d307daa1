"""The intent database: SQLAlchemy models, engines and sessions, the repository, migrations."""
