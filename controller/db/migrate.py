"""Alembic migrations run programmatically (no alembic.ini needed in the working directory)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

import migrations
from controller.db.session import normalize_url


def script_location() -> Path:
    """The directory of the ``migrations`` package (works from an installed package too)."""
    return Path(next(iter(migrations.__path__))).resolve()


def alembic_config(url: str | URL) -> Config:
    """An Alembic Config for ``url`` with the bundled migration scripts."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    rendered = normalize_url(url).render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision`` (default: the latest)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` ("base" removes every table)."""
    command.downgrade(alembic_config(url), revision)
