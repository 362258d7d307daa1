"""The controller process: migrations, flow engine, os-ken OpenFlow listener and the REST API."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection

import uvicorn
from sqlalchemy.orm import Session, sessionmaker

from controller.config import Settings
from controller.model import Snapshot
from controller.sync import FlowSync, SwitchStatus
from vxcommon.retry import SERVER_KEEPALIVE

log = logging.getLogger(__name__)


def write_admin_token(sessions: sessionmaker[Session], path: str) -> None:
    """Make the bootstrap admin token if the database has no admin, and write it to ``path``
    (mode 0600, replaced atomically) so that root on this machine needs no setup."""
    from controller.db import tokens

    token = tokens.ensure_bootstrap_admin(sessions)
    if token is None:
        log.info("admin token: the bootstrap token was revoked; %s left as it is", path)
        return
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.info("admin token in %s (`vxplane token create` makes more)", path)


class PokingSync:
    """The engine as the API's ``FlowSync``, and every write also pokes the membership while
    another member is live (``Membership.poke_shared``: their applied revisions, read at once
    for a ``wait_ready`` here). A host that registers gets a master at once through the
    engine (``Engine.on_switches``) instead of at the next lease renewal."""

    def __init__(self, engine: FlowSync, poke: Callable[[], None]) -> None:
        self._engine = engine
        self._poke = poke

    def notify(self, revision: int) -> None:
        self._engine.notify(revision)
        self._poke()

    def wait_applied(self, revision: int, timeout: float, hosts: Collection[str] = ()) -> bool:
        return self._engine.wait_applied(revision, timeout, hosts)

    async def until_applied(
        self, revision: int, timeout: float, hosts: Collection[str] = ()
    ) -> bool:
        return await self._engine.until_applied(revision, timeout, hosts)

    def switches(self) -> list[SwitchStatus]:
        return self._engine.switches()

    def waiting_on(self, revision: int) -> list[str] | None:
        return self._engine.waiting_on(revision)

    def intent_view(self) -> Snapshot | None:
        return self._engine.intent_view()


def run_controller(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM. Applies pending migrations first."""
    from controller.api.app import create_app
    from controller.api.writer import Writer
    from controller.db import changelog, migrate, repo
    from controller.db.changelog import ChangeGroups  # noqa: F401 (annotation)
    from controller.db.session import make_control_engine, make_engine, make_session_factory
    from controller.engine import Engine
    from controller.events import EventHub
    from controller.membership import Membership, new_member_id
    from controller.ofapp import start_openflow
    from controller.roles import Roles

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    migrate.upgrade(settings.db_url)
    db = make_engine(settings.db_url)
    sessions = make_session_factory(db)  # the API's
    control_db = make_control_engine(db)  # PostgreSQL: a pool the API's load cannot take
    control = make_session_factory(control_db)  # the engine's, the membership's, the events'
    write_admin_token(sessions, settings.admin_token_file)

    def read_changes(session: Session, after: int) -> ChangeGroups | None:
        repo.begin_snapshot(session)
        return changelog.read_changes(session, after)

    writers: list[Writer] = []  # the API's, once it is made

    def mark_ready(session: Session, revisions: Collection[int]) -> int:
        """The engine's ready marks go with the API's writes (one SQLite writer: a second
        one would wait on the write lock in SQLite's sleeping busy handler); before the API
        runs, the engine writes them itself."""
        wanted = sorted(revisions)

        def write(batch: Session) -> tuple[None, None]:
            repo.mark_ready_at(batch, wanted)
            return None, None

        if writers and writers[0].submit_threadsafe(write):
            return 0
        return repo.mark_ready_at(session, wanted)

    from controller.db.events import DbEventStore

    member_id = new_member_id()
    hub = EventHub(settings.events_capacity, store=DbEventStore(control), origin=member_id)
    hub.start()  # ids from the cluster-wide log: a client resumes on any member
    tls = settings.openflow_tls
    # Mastership: the engine writes to a switch only as its confirmed master (roles.py);
    # the membership thread keeps our lease and tells the roles which switches are ours.
    engine_box: list[Engine] = []

    def on_event(kind: str, **data: object) -> None:
        hub.publish(kind, **data)
        if kind == "switch.converged":
            membership.poke_shared()  # publish the applied revision for the other controllers

    with control() as session:  # the fleet that may reconnect before the first intent read
        hosts_at_start = repo.count_hosts(session)
    roles = Roles(
        on_master=lambda dpid, conn: engine_box[0].resync(dpid, conn),
        on_step_down=lambda dpid, conn: engine_box[0].step_down(dpid, conn),
        on_refused=lambda: membership.poke(),
        on_resumed=lambda dpid, conn: engine_box[0].resumed(dpid, conn),
    )
    engine = Engine(
        control,
        repo.load_snapshot,
        repo.current_revision,
        mark_ready,
        read_changes=read_changes,
        save_states=repo.save_switch_states,
        prune_log=changelog.prune,
        poll_interval=settings.engine_poll_interval,
        audit_interval=settings.engine_audit_interval,
        load_page=repo.load_page,
        audit_page_endpoints=settings.engine_audit_page_endpoints,
        on_event=on_event,
        require_cert=tls is not None,
        bundles=settings.openflow_bundles,
        gate=roles,
        hosts_at_start=hosts_at_start,
        max_dumps=settings.openflow_max_dumps,
    )
    engine_box.append(engine)
    membership = Membership(
        control,
        roles,
        member_id=member_id,
        api_url=settings.api_url,
        openflow=settings.openflow_target,
        lease=settings.lease,
        renew_every=settings.lease_renew,
        applied=engine.applied_revisions,
        on_applied=engine.remote_applied,
    )
    engine.on_switches = membership.poke  # a host's switch came or went: rebalance now
    membership.start()
    log.info(
        "controller %s: member of the cluster (API %s, OpenFlow %s, lease %.1f s)",
        membership.id, membership.api_url, membership.openflow, settings.lease,
    )  # fmt: skip
    engine.start()
    listener = None
    if db.dialect.name == "postgresql":  # other controller processes' writes, at once
        from controller.db.listen import RevisionListener

        def on_revision(revision: int) -> None:
            engine.notify(revision)
            hub.poke()  # another controller's write: its events are in the log
            membership.poke_shared()  # its switches' applied revisions (hosts: on_switches)

        listener = RevisionListener(settings.db_url, on_revision)
        listener.start()
    start_openflow(
        engine,
        settings.openflow_host,
        settings.openflow_port,
        echo_interval=settings.switch_echo_interval,
        echo_misses=settings.switch_echo_misses,
        tls=tls,
        handshake_timeout=settings.switch_handshake_timeout,
        roles=roles,
    )
    log.info(
        "OpenFlow listening on %s:%d (%s)",
        settings.openflow_host,
        settings.openflow_port,
        "TLS, client certificates required" if tls else "plain TCP",
    )
    sync = PokingSync(engine, membership.poke_shared)
    app = create_app(
        settings, sync=sync, session_factory=sessions, events=hub, membership=membership
    )
    engine.on_pass = app.state.metrics.engine_pass.observe  # GET /metrics
    writers.append(app.state.writer)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_keep_alive=int(SERVER_KEEPALIVE),  # the agents drop theirs before (vxcommon.retry)
        # open event streams (dashboards, `vxplane events`) never end by themselves
        timeout_graceful_shutdown=2,
        ssl_certfile=settings.api_cert,
        ssl_keyfile=settings.api_key,
    )
    server = uvicorn.Server(config)
    scheme = "https" if settings.api_cert else "http"
    log.info("API on %s://%s:%d (dashboard at /)", scheme, settings.api_host, settings.api_port)
    try:
        server.run()
    finally:
        if listener is not None:
            listener.stop()
        membership.stop()  # frees our switches for the others at once
        engine.stop()
        hub.stop()  # a last flush of this controller's own events
        db.dispose()
        control_db.dispose()
        # os-ken's hub threads are not daemons and cannot be killed (hub.kill is a no-op).
        logging.shutdown()
        os._exit(0)
