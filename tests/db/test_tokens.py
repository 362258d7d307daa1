"""The bootstrap admin token on SQLite and PostgreSQL: one, however many controllers start."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from controller.auth import Role
from controller.db import migrate, tokens
from controller.db.session import make_engine, make_session_factory
from controller.server import write_admin_token


def test_concurrent_first_starts_make_one_admin_token(db_url: str, tmp_path: Path) -> None:
    """Several controllers starting at once on one database (SQLite and PostgreSQL): exactly
    one bootstrap admin token, and every one of them writes that same token."""
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    paths = [tmp_path / f"c{i}" / "admin-token" for i in range(6)]
    barrier = threading.Barrier(len(paths))
    errors: list[BaseException] = []

    def start(path: Path) -> None:
        try:
            barrier.wait()
            write_admin_token(factory, str(path))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(p,)) for p in paths]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    written = {p.read_text() for p in paths}
    assert len(written) == 1
    for p in paths:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    with factory() as session:
        admins = [t for t in tokens.list_tokens(session) if t.role is Role.admin]
    assert len(admins) == 1 and admins[0].bootstrap
    # revoked and no other admin left: the next start makes a new one
    with factory() as session:
        tokens.revoke(session, admins[0].id)
        session.commit()
    write_admin_token(factory, str(paths[0]))
    assert paths[0].read_text() not in written
    engine.dispose()
