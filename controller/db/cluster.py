"""The cluster id: one random id per intent database, made by its first migration.

Agents keep the id of the cluster they joined (br-int's ``external_ids:vxplane-cluster-id``)
and send it when they register; a controller whose database has another id (an empty
database after a wrong ``--db``, or another cluster's) refuses them with ``ClusterMismatch``
before it changes anything, so it never takes over their switches and wipes their flows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.db.base import utcnow
from controller.db.models import ClusterRow
from controller.errors import Conflict


class ClusterMismatch(Conflict):
    """An agent of another cluster tried to register (HTTP 409)."""


def cluster_id(session: Session) -> str:
    """This database's cluster id; made now if the row is missing (a database made by hand)."""
    found = session.execute(select(ClusterRow.cluster_id).where(ClusterRow.id == 1)).scalar()
    if found is not None:
        return str(found)
    made = str(uuid.uuid4())
    try:
        with session.begin_nested():
            session.add(ClusterRow(id=1, cluster_id=made, created_at=utcnow()))
    except IntegrityError:  # made concurrently
        return str(session.execute(select(ClusterRow.cluster_id)).scalar_one())
    return made


def check_cluster(session: Session, host: str, expected: str | None) -> str:
    """This database's cluster id; ``ClusterMismatch`` if ``expected`` is another one."""
    actual = cluster_id(session)
    if expected is not None and expected != actual:
        raise ClusterMismatch(
            f"host {host!r} belongs to cluster {expected}, but this controller's database is "
            f"cluster {actual}: registering would replace the host's flows with this "
            "database's. Is the controller running on the right database (--db)? To move the "
            "host to this cluster on purpose, restart its agent once with --adopt-cluster"
        )
    return actual
