"""Flow sync engine: intent -> desired flows per switch -> diff -> ordered batch -> barrier.

One worker thread owns all sending. It wakes on ``notify`` (an in-process event from the
API), on switch events, and every ``poll_interval`` seconds (which also picks up revisions
committed by another controller process sharing a PostgreSQL database).

The intent lives in memory (``intent.Intent``): read in full once at start, then kept up to
date from the change log (``read_changes``: the rows written since the model's revision, see
``controller.db.changelog``). A pass applies the changes and recomputes
``pipeline.desired_flows`` only for the hosts they touch (``intent.apply_changes``); every
``audit_interval`` seconds the whole database must find the model equal, read in pages
(``load_page``): the hosts are cut into K slices by row id modulo K (K: bound endpoints /
``audit_page_endpoints``, at most one per host, fixed for a cycle), and every
``audit_interval / K`` seconds one pass reads, in its change read's snapshot, the networks,
hosts, blocks and the endpoints of one slice's hosts, and compares them with the model's
endpoints of the same hosts (a full read of 50,000 endpoints in the pass stopped the engine
for 0.5-1 s on SQLite, 4-5 s on PostgreSQL). A mismatch is logged, reported as
``engine.audit_mismatch`` and a full read adopted; ``audits`` counts whole cycles,
``audit_pages`` the pages, ``audit_mismatches`` the pages that differed. A host whose desired flows
changed gets a new *wanted generation*; its switch, when connected and synced, gets the diff
against its installed model (``reconcile.diff``) in one buffer followed by a barrier, whose
reply makes that generation *applied*.

Readiness: a revision (the one an endpoint was bound at) needs the generation wanted, after
it, of every host its changes touched; it is ready once each of those switches applied it.
A slow, silent or disconnected switch so delays only the endpoints that need it, and
``waiting_on`` names it; the same for a switch this controller does not master (confirmed
by its master's published revision) and one nobody masters (confirmed by nobody). What waits
is kept in O(hosts + revisions) (``_HostNeed``), not per revision and host. API requests
wait with ``until_applied`` from the event loop, holding
no thread (each waiter is an asyncio future that the barrier's thread resolves through
``call_soon_threadsafe``), or ``wait_applied``, blocking, from a thread.

A switch is synced after its first flow dump at connect: its installed model is then exactly
the cookies it holds, so a controller restart replays nothing that is already there and
deletes only stale flows. A failed database read changes nothing.

Flow dumps in flight are bounded (``max_dumps``, default ``MAX_DUMPS``): a switch whose flows
must be read waits in a queue, first come first served, and is asked when fewer than that
many dumps are under way; each dump that completes, fails (too long, or no reply part for
``DUMP_TIMEOUT`` s: the switch is closed) or stops counting (the switch disconnected, or we
stepped down as its master) asks the next. A restarted controller's whole fleet reconnects
at once: every switch's dump in flight together, ~2,200 flows each at 1,000 x 50, was the
restarted process's memory peak (docs/benchmarks.md "The restart's memory peak"). A dump
that stops counting while its reply is still coming (a step-down, or ``resync`` while it is
under way: the reply may predate what must be read) has that reply dropped when it comes:
replies to one connection come in the order asked.

Admission: a connection is only *held* until its datapath id belongs to a registered host
(and, with TLS, until its certificate's CN names that host); only then is it asked for a
flow dump and sent flows. A connection for a dpid that is already connected replaces the
first only when the first has missed an echo or the new one presents the host's
certificate; otherwise the new one is refused, closed and reported (``switch.refused``).

A flow the switch rejects (an error carrying a flow-mod's xid) is held back on that switch
with exponential backoff (``QUARANTINE_BASE`` doubling up to ``QUARANTINE_MAX`` seconds),
reported (``switch.flow_rejected``, ``SwitchStatus.rejected_flows``) and retried only when
its time comes; the rest of the batch is applied as usual. A rejected add that replaced a
flow puts the replaced one back in the installed model, so the next pass deletes it.

A batch that must apply as a whole goes as one ONF bundle (``bundles``: "auto", the
default, bundles a batch that replaces or removes flows while it adds others; "always";
"never"): open, every flow-mod as a bundle-add, then a barrier. OVS refuses a bad message
at add time and would still commit the rest, so the engine commits only when that barrier
comes back without an error for any of the bundle's messages; otherwise it discards the
bundle. The rejected flows are held back as above; since the switch applied none of the
batch, the switch is asked for a flow dump again (as at connect) and the next pass sends the
rest. A commit that fails (the switch refused a message at commit time: overlap, table full)
does the same. A switch that answers the open with an error gets plain flow-mods from then on.

Backpressure: a switch whose connection reports ``congested`` (more queued for it than it
has read, or more queued for all switches together than the global budget, see
``controller/ofconn.py``) is left out of passes (its host stays queued) until
``switch_drained`` (or ``budget_drained``) queues it again; it then gets the difference
against its installed model, so nothing is lost by waiting.

No os-ken import here: switches are reached through the small ``SwitchConn`` protocol that
``ofapp`` implements.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from controller import ofmsg
from controller.flows import Flow
from controller.intent import HOST, Change, Intent, apply_deltas, diff_views
from controller.model import EndpointState, Snapshot
from controller.pipeline import RemoteFlows, desired_list
from controller.reconcile import (
    Changes,
    FlowKey,
    Shared,
    apply,
    apply_patch,
    diff,
    diff_patch,
    editable,
    settled,
)
from controller.sync import SwitchStatus
from vxcommon import tpoints

log = logging.getLogger(__name__)

SEND_CHUNK = 64 * 1024
FIRST_XID = 0x80000000
QUARANTINE_BASE = 1.0  # s before a rejected flow is tried again; doubles on every rejection
QUARANTINE_MAX = 300.0
MAX_HELD = 256  # connections waiting for their dpid to become a registered host's
# ... plus, before the first intent read (every dpid is unknown then, and a restarted
# controller's whole fleet reconnects within a second), one per host registered at start
HOLD_TIMEOUT = 120.0  # s a connection may wait for that before it is closed
MAX_DUMP_FLOWS = 500_000  # a flow dump longer than this is not a vxplane switch's: closed
MAX_DUMPS = 100  # flow dumps under way at once at most (the rest queue): see the docstring
DUMP_TIMEOUT = 60.0  # s a dump under way may go without a reply part before its switch is closed
BUNDLE_MODES = ("auto", "always", "never")


class SwitchConn(Protocol):
    """A live OpenFlow connection to one switch."""

    dpid: int
    address: str
    peer_name: str | None  # CN of the switch's TLS certificate; None over plain TCP

    def send(self, data: bytes) -> bool:
        """Queue raw OpenFlow bytes (never blocks); False if the connection is closing."""

    def congested(self) -> bool:
        """True while more is queued for the switch than it should be sent before it has
        read some (``switch_drained`` tells when that is over)."""

    def request_flow_dump(self) -> None:
        """Ask the switch for all its flows (answered through ``Engine.switch_dump``)."""

    def missed_echo(self) -> bool:
        """True if the switch left an echo request unanswered for a whole probe period."""

    def close(self) -> None:
        """Close the connection (a refused or replaced switch)."""


class WriteGate(Protocol):
    """Who may write to which switch (``controller.roles.Roles``: lease, mastership, role)."""

    def may_write(self, dpid: int, conn: object) -> bool:
        """A batch may go to switch ``dpid`` over ``conn`` now."""

    def masters(self, dpid: int) -> bool:
        """This controller is assigned switch ``dpid`` (its readiness counts here)."""

    def role_of(self, dpid: int) -> str:
        """Our role on switch ``dpid`` as the switch granted it: master, slave or equal."""


@dataclass
class _Held:
    """A flow the switch rejected: not sent again before ``until``."""

    until: float
    attempts: int
    error: str
    sent: bool = False  # included again in a batch after ``until``


@dataclass(frozen=True, slots=True)
class _Sent:
    """An add in flight: its cookie and the installed flow it replaces (if any)."""

    cookie: int
    replaced: tuple[int, Flow] | None = None


XID_SPAN = 0x100000000 - FIRST_XID  # the xids ``_Switch.xid`` cycles through


@dataclass(eq=False, slots=True)
class _Batch:
    """A batch's adds in flight, by xid, in no more space than its adds tuple: the adds got
    consecutive xids from ``first`` (``_Switch.xid``), so an xid names its add by its
    offset. Only the adds that replace an installed flow keep the flow they replace; the
    adds the switch rejected are struck out (``pop``). (A dict of one ``_Sent`` per xid cost
    about 230 KB per switch in flight in a cold start at 1,000 hosts: ``bench.memory``.)"""

    first: int
    adds: tuple[Flow, ...]
    replaced: dict[int, tuple[int, Flow]] = field(default_factory=dict)  # offset -> flow
    gone: set[int] = field(default_factory=set)  # offsets rejected

    def _offset(self, xid: int) -> int | None:
        if xid < FIRST_XID:
            return None
        i = (xid - self.first) % XID_SPAN
        return i if i < len(self.adds) and i not in self.gone else None

    def __contains__(self, xid: int) -> bool:
        return self._offset(xid) is not None

    def pop(self, xid: int) -> _Sent | None:
        """The add sent with ``xid`` (struck out: popped once), None if not in this batch."""
        i = self._offset(xid)
        if i is None:
            return None
        self.gone.add(i)
        return _Sent(self.adds[i].cookie, self.replaced.get(i))

    def cookies(self) -> Iterator[int]:
        """The cookies of the adds not struck out."""
        gone = self.gone
        return (f.cookie for i, f in enumerate(self.adds) if i not in gone)


@dataclass(eq=False)
class _Bundle:
    """A batch sent as an ONF bundle: open, its messages, then the ``prepare`` barrier; the
    commit (``commit_xid``) and the batch's own barrier (``final_xid``) follow if no message
    was refused."""

    bundle_id: int
    open_xid: int
    prepare_xid: int
    commit_xid: int
    final_xid: int
    xids: frozenset[int]  # its messages' xids (the bundle-adds carry the inner ones)
    failed: str | None = None  # why it must not be committed
    refused: bool = False  # the switch refused the open: it has no such bundle
    committing: bool = False


def _cookies() -> array[int]:
    return array("Q")


@dataclass(eq=False)  # hashed by identity (``Engine._dumps_out``)
class _Switch:
    conn: SwitchConn
    since: float = 0.0  # when it connected (the engine's clock)
    connected: bool = True
    admitted: bool = False  # its dpid is a registered host's (and its certificate names it)
    dumping: bool = False  # its flows must be read: a dump is queued or under way
    # a dump was wanted since admission (``resync``: the switch made us its master between
    # the admission and the pass that asks admitted switches; that pass then asks nothing)
    asked: bool = False
    queued: bool = False  # in ``Engine._dump_queue``, waiting for a dump slot
    dump_out: bool = False  # its dump request is out and holds a slot (``max_dumps``)
    dump_at: float = 0.0  # when that request went out or its last reply part came
    discard: int = 0  # dump replies still to come that no longer count (dropped whole)
    synced: bool = False
    # cookies of a flow dump under way, 8 bytes each: at a restart every switch dumps at
    # once, and a set of int objects took ~65 bytes a cookie (130 MiB at 1,000 x 10)
    dump: array[int] = field(default_factory=_cookies)
    # cookie -> flow (None: known by cookie only, from a dump); once the switch holds exactly
    # its host's desired flows, a ``reconcile.Shared`` view of that very tuple (no copy)
    installed: Mapping[int, Flow | None] = field(default_factory=dict)
    host: str | None = None
    sent_gen: int = 0  # generation of the last batch sent
    sent_rev: int = 0  # the revision it was computed at
    # The host's generations and the one whose flows ``installed`` holds exactly (None:
    # not known: after a dump, a rejected add, flows held back)
    exact: tuple[_Gen, int] | None = None
    pending: dict[int, int] = field(default_factory=dict)  # barrier xid -> generation
    batches: dict[int, _Batch] = field(default_factory=dict)  # barrier xid -> its adds
    held: dict[int, _Held] = field(default_factory=dict)  # rejected cookie -> backoff
    next_xid: int = FIRST_XID
    errors: int = 0
    bundles_ok: bool = True  # False once it refused to open a bundle: plain flow-mods
    bundles: list[_Bundle] = field(default_factory=list)  # in flight, oldest first

    def forget_inflight(self) -> None:
        self.pending.clear()
        self.batches.clear()
        for b in self.bundles:  # still open on the switch: discarded at their prepare barrier
            b.failed = b.failed or "the switch is dumped again"
        self.bundles = [b for b in self.bundles if not b.committing]

    def bundle_of(self, xid: int) -> _Bundle | None:
        return next(
            (b for b in self.bundles if xid in b.xids or xid in (b.open_xid, b.commit_xid)),
            None,
        )

    def xid(self) -> int:
        self.next_xid = FIRST_XID if self.next_xid >= 0xFFFFFFFF else self.next_xid + 1
        return self.next_xid


@dataclass
class _Gen:
    """A host's generations of desired flows: the newest (wanted) and the newest its switch
    confirmed (applied), with the intent revision each was computed at."""

    wanted: int = 0
    applied: int = 0
    wanted_rev: int = 0
    applied_rev: int = 0
    # The host's desired flows in cookie order (``_packed``), None: not computed (the host is
    # unknown). A tuple, not a frozenset: 8 bytes a flow instead of up to 64 (a set's table
    # is kept under 60 % full and grows fourfold), 17 KB instead of 128 KB a host at 1,000
    # hosts; the engine only iterates it, and compares it whole.
    desired: tuple[Flow, ...] | None = None
    # What patches (``_patch``) took from and gave to ``desired`` since generation ``base``
    # (cookie -> flow, net): its switch, if it holds exactly generation ``base``'s flows,
    # gets these as its batch instead of a diff of every flow (``_sync_switch``). None: a
    # recomputation (or a delta grown past half the flows) since; a full diff.
    base: int = -1
    delta: tuple[dict[int, Flow], dict[int, Flow]] | None = None


@dataclass(slots=True)
class _HostNeed:
    """What the revisions waiting for one host need of it, in O(1) space per host: pairs
    (generation, first revision that needs at least it), both ascending (a Pareto front:
    the revisions unmet on the host are those it touched from the ``since`` of the first
    pair whose generation is not applied yet), and ``last``, the newest revision that
    touched it. Over ``MAX_STEPS`` pairs the two oldest merge, so a revision may wait for
    a newer generation than it needed (longer, never shorter)."""

    steps: list[tuple[int, int]] = field(default_factory=list)
    last: int = 0

    def add(self, generation: int, revision: int) -> None:
        steps = self.steps
        self.last = max(self.last, revision)
        if any(g >= generation and r <= revision for g, r in steps):
            return  # implied by a pair already there
        steps[:] = [(g, r) for g, r in steps if not (g <= generation and r >= revision)]
        steps.append((generation, revision))
        steps.sort()
        if len(steps) > MAX_STEPS:
            steps[0:2] = [(steps[1][0], steps[0][1])]


@dataclass(eq=False)
class _Waiter:
    """An asyncio wait for ``revision`` (and ``hosts`` connected); ``wake`` from any thread."""

    revision: int
    hosts: tuple[str, ...]
    wake: Callable[[], None]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _packed(flows: Iterable[Flow]) -> tuple[Flow, ...]:
    """A host's desired flows as ``_Gen`` keeps them: a tuple in cookie order (equal sets of
    flows give equal tuples; memoized flows make the comparison mostly identity checks)."""
    return tuple(sorted(flows, key=_cookie))


def _unique(flows: Iterable[Flow]) -> tuple[Flow, ...]:
    """``_packed`` of a list that may hold a flow twice: one per cookie (equal flows have
    equal cookies), without hashing each ``Flow`` (a frozenset did: 2 million hashes of
    nested tuples per full computation at 1,000 hosts)."""
    by_cookie = {f.cookie: f for f in flows}
    return tuple(by_cookie[c] for c in sorted(by_cookie))


def _cookie(f: Flow) -> int:
    return f.cookie


class _Computed:
    """The hosts whose desired flows are computed (those ``apply_deltas`` may patch)."""

    def __init__(self, gens: dict[str, _Gen]) -> None:
        self._gens = gens

    def __contains__(self, host: object) -> bool:
        gen = self._gens.get(host) if isinstance(host, str) else None
        return gen is not None and gen.desired is not None


SnapshotLoader = Callable[[Session], Snapshot]
# (session, page, pages) -> networks, hosts, blocks and the endpoints of the page's hosts
# only, and those hosts' names (``repo.load_page``)
PageLoader = Callable[[Session, int, int], tuple[Snapshot, frozenset[str]]]
AUDIT_PAGE_ENDPOINTS = 5000  # an audit page's size in bound endpoints, about
ChangeReader = Callable[[Session, int], tuple[int, list[tuple[int, list[Change]]]] | None]
ReadyMarker = Callable[[Session, Collection[int]], int]
StateSaver = Callable[[Session, dict[str, tuple[int, int]]], None]  # host -> (wanted, applied)
MAX_NEEDS = 200_000  # revisions waiting for switches kept (the oldest are dropped beyond)
MAX_STEPS = 8  # generations a host's waiting revisions are told apart by (``_HostNeed``)
NEVER = 1 << 62  # no revision waits for the host
MAX_SPAN = 10_000  # revisions a full read may skip and still give each one its needs
EventSink = Callable[..., Any]  # on_event(type, **data): see controller.events.EVENT_TYPES


class Engine:
    """The OpenFlow side of the controller; implements ``controller.sync.FlowSync``."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        load_snapshot: SnapshotLoader,
        load_revision: Callable[[Session], int],
        mark_ready: ReadyMarker,
        *,
        read_changes: ChangeReader | None = None,
        save_states: StateSaver | None = None,
        prune_log: Callable[[Session], int] | None = None,
        poll_interval: float = 2.0,
        audit_interval: float = 60.0,
        load_page: PageLoader | None = None,
        audit_page_endpoints: int = AUDIT_PAGE_ENDPOINTS,
        on_event: EventSink | None = None,
        require_cert: bool = False,
        clock: Callable[[], float] = time.monotonic,
        bundles: str = "auto",
        gate: WriteGate | None = None,
        hosts_at_start: int = 0,
        max_dumps: int = MAX_DUMPS,
    ) -> None:
        if bundles not in BUNDLE_MODES:
            raise ValueError(f"bundles must be one of {', '.join(BUNDLE_MODES)}, not {bundles!r}")
        if max_dumps < 1:
            raise ValueError(f"max_dumps must be at least 1, not {max_dumps}")
        if audit_page_endpoints < 1:
            raise ValueError(f"audit_page_endpoints must be at least 1, not {audit_page_endpoints}")
        self._max_dumps = max_dumps
        self._dump_queue: deque[_Switch] = deque()  # switches waiting for a dump slot, in order
        self._dumps_out: set[_Switch] = set()  # switches whose dump request holds a slot
        self.dumps_asked = 0  # dump requests sent (tests, diagnostics)
        self.dumps_peak = 0  # the most dumps under way at once so far
        self._sessions = session_factory
        self._load_snapshot = load_snapshot
        self._load_revision = load_revision
        self._read_changes = read_changes  # None: a full read whenever the revision moved
        self._save_states = save_states
        self._prune_log = prune_log
        self._states_dirty: set[str] = set()  # hosts whose generations are not saved yet
        self._next_housekeeping = 0.0
        self._prune_due = False
        self._mark_ready = mark_ready
        self._poll = poll_interval
        self._audit_every = audit_interval
        self._load_page = load_page  # None: each audit is one full read
        self._page_size = audit_page_endpoints
        self._page = 0  # the audit's next page in its cycle
        self._pages = 1  # the pages of the cycle under way (fixed at its first page)
        self._on_event = on_event
        self._require_cert = require_cert  # TLS: a switch's certificate CN must be its host
        self._clock = clock
        self._bundles = bundles
        self._gate = gate  # None: the only controller, every admitted switch is ours
        self._hosts_at_start = max(0, hosts_at_start)  # more may be held before the first read
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._switches: dict[int, _Switch] = {}
        self._waiters: set[_Waiter] = set()
        self._intent: Intent | None = None
        self._view: tuple[Intent, Snapshot] | None = None  # intent_view's copy, by revision
        self._revision = -1  # the model's revision once its needs are known (readiness)
        self._gens: dict[str, _Gen] = {}  # by host name
        # Readiness (see ``_need``): revision -> the hosts it still waits for, or None when
        # it touched every host (then it waits for no host whose ``_unmet_from`` is <= it);
        # per host what those revisions need of it, and the revisions naming it.
        self._needs: dict[int, set[str] | None] = {}
        self._needs_every: list[int] = []  # heap of the revisions that touched every host
        self._host_needs: dict[str, _HostNeed] = {}
        self._needs_by_host: dict[str, set[int]] = {}
        self._to_mark: set[int] = set()  # revisions ready, not yet recorded in the database
        self._todo: set[str] = set()  # hosts whose switch should be brought to desired
        self._next_audit = 0.0
        self._remote: dict[int, int] = {}  # dpid -> revision its master (elsewhere) applied
        self._dirty = True
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.refused = 0
        self.bundles_committed = 0  # commits the switches confirmed (tests, diagnostics)
        self.bundles_discarded = 0
        self.on_pass: Callable[[float], None] | None = None  # seconds of each pass (metrics)
        # a host's switch came, went or changed its dpid (a change applied, or a full read):
        # the membership rebalances mastership now rather than at its next renewal
        self.on_switches: Callable[[], None] | None = None
        self.audits = 0  # audit cycles completed: the whole database compared once each
        self.audit_pages = 0  # pages compared (a cycle is ``_pages`` of them)
        self.audit_mismatches = 0  # pages (or full audits) that found a difference
        self.full_reads = 0
        self.recomputed = 0  # desired flow sets computed (hosts x passes)
        self.patch_batches = 0  # batches sent as a patch's flows, not a diff of every flow
        self.patched = 0  # desired flow sets patched by an endpoint's own flows instead
        self._admitted: list[_Switch] = []  # admitted by a pass: their dump is asked for
        # the intent's dpid -> host map that every switch's host was last checked against
        self._dpids_seen: Mapping[int, str] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="vxplane-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker thread (our own flag: os-ken's hub.kill is a no-op)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- FlowSync --------------------------------------------------------------------------
    def notify(self, revision: int) -> None:
        """Intent changed at ``revision``: wake the worker."""
        self._set_dirty()

    def _set_dirty(self) -> None:
        with self._lock:
            self._dirty = True
        self._wake.set()

    def wait_applied(self, revision: int, timeout: float, hosts: Collection[str] = ()) -> bool:
        """Wait until every connected switch applied ``revision`` and ``hosts`` are connected."""
        with self._changed:
            return self._changed.wait_for(lambda: self._ready(revision, hosts), timeout)

    async def until_applied(
        self, revision: int, timeout: float, hosts: Collection[str] = ()
    ) -> bool:
        """``wait_applied`` for the event loop: awaits a future, holds no thread."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(_settle, done)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        waiter = _Waiter(revision, tuple(hosts), wake)
        with self._lock:
            if self._ready(revision, hosts):
                return True
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(done, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    @property
    def waiting(self) -> int:
        """How many ``until_applied`` calls are waiting (tests, diagnostics)."""
        with self._lock:
            return len(self._waiters)

    def _signal(self) -> None:
        """(Lock held.) Generations or connections changed: wake the waiters done."""
        self._changed.notify_all()
        if not self._waiters:
            return
        for waiter in list(self._waiters):
            if self._ready(waiter.revision, waiter.hosts):
                self._waiters.discard(waiter)
                waiter.wake()

    def switches(self) -> list[SwitchStatus]:
        """Status of every admitted switch seen since start (held connections are not)."""
        with self._lock:
            out = []
            for dpid, sw in sorted(self._switches.items()):
                if not sw.admitted:
                    continue
                gen = self._gens.get(sw.host or "", _Gen())
                applied_gen, applied_rev = gen.applied, self._applied_revision(gen)
                remote = self._remote_applied(sw.host) if sw.host else -1
                if remote >= 0:  # mastered elsewhere: as its master published it
                    applied_rev = remote
                    applied_gen = gen.wanted if remote >= gen.wanted_rev else gen.applied
                out.append(
                    SwitchStatus(
                        dpid=dpid,
                        connected=sw.connected,
                        address=sw.conn.address,
                        applied_revision=applied_rev,
                        flow_count=len(sw.installed),
                        host=sw.host,
                        rejected_flows=len(sw.held),
                        wanted_generation=gen.wanted,
                        applied_generation=applied_gen,
                        role=self._gate.role_of(dpid) if self._gate is not None else None,
                        flow_dump=_dump_state(sw),
                    )
                )
            return out

    def _applied_revision(self, gen: _Gen) -> int:
        """The revision a host's switch is current with: the model's when it applied the
        generation wanted, else the one its applied generation was computed at."""
        if gen.applied >= gen.wanted and self._revision >= 0:
            return self._revision
        return gen.applied_rev

    def installed_cookies(self, dpid: int) -> set[int]:
        """The cookies the engine believes switch ``dpid`` holds (tests, diagnostics)."""
        with self._lock:
            sw = self._switches.get(dpid)
            return set(sw.installed) if sw else set()

    def held_cookies(self, dpid: int) -> set[int]:
        """Cookies switch ``dpid`` rejected and that are held back (tests, diagnostics)."""
        with self._lock:
            sw = self._switches.get(dpid)
            return set(sw.held) if sw else set()

    def waiting_on(self, revision: int) -> list[str] | None:
        """The hosts whose switches have not confirmed what ``revision`` changed for them
        (empty: ready); None while the engine has not read ``revision`` yet."""
        with self._lock:
            if self._revision < revision:
                return None
            if revision not in self._needs:
                return []
            hosts = self._needs[revision]
            names = self._host_needs if hosts is None else hosts
            return sorted(h for h in names if self._unmet_from(h) <= revision)

    def intent_view(self) -> Snapshot | None:
        """A copy of the in-memory intent (bound endpoints only), None before the first read:
        what the API answers from while the database is unavailable."""
        with self._lock:
            intent = self._intent
            if intent is None:
                return None
            cached = self._view
            if cached is None or cached[0] is not intent or cached[1].revision != intent.revision:
                cached = self._view = (intent, intent.snapshot())  # once per revision read
            return cached[1]

    def _gen(self, host: str) -> _Gen:
        gen = self._gens.get(host)
        if gen is None:
            gen = self._gens[host] = _Gen()
        return gen

    def _ready(self, revision: int, hosts: Collection[str]) -> bool:
        """(Lock held.) ``revision`` was read and every switch it needs confirmed it, and
        the switches of ``hosts`` are connected here, or mastered and confirmed elsewhere."""
        if self._revision < revision or revision in self._needs:
            return False
        return all(self._is_present(h) or self._remote_applied(h) >= revision for h in hosts)

    def _is_present(self, host: str) -> bool:
        """(Lock held.) ``host``'s switch is connected here, and ours to write: O(1) through
        the host's dpid in the common case, so waking a waiter does not look at every switch."""
        found = self._intent.hosts.get(host) if self._intent is not None else None
        sw = self._switches.get(found.dpid) if found is not None and found.dpid else None
        if sw is not None and sw.host == host and sw.connected and self._ours(sw):
            return True
        return host in self._present()  # e.g. re-registered with another dpid: look at all

    def _met(self, host: str, generation: int, revision: int) -> bool:
        """(Lock held.) ``host``'s switch has ``generation`` (of ``revision``): confirmed
        here when we master it (or nobody else may: no gate), or else published as applied
        at ``revision`` or later by its master. One rule for every switch that must know:
        a switch disconnected, never connected, or mastered by nobody has confirmed nothing,
        and delays (only) the revisions that changed its flows."""
        if not self._elsewhere(host):
            return self._gen(host).applied >= generation
        return self._remote_applied(host) >= revision

    def _unmet_from(self, host: str) -> int:
        """(Lock held.) The oldest revision that touched ``host`` and that its switch has not
        confirmed (every later revision that touched it is unmet too); ``NEVER``: none."""
        need = self._host_needs.get(host)
        if need is None or not need.steps:
            return NEVER
        if self._elsewhere(host):
            start = max(need.steps[0][1], self._remote_applied(host) + 1)
            if start > need.last:
                need.steps.clear()
                return NEVER
            return start
        applied = self._gen(host).applied
        steps = need.steps
        done = 0
        while done < len(steps) and steps[done][0] <= applied:
            done += 1
        if done:
            del steps[:done]
        return steps[0][1] if steps else NEVER

    def _elsewhere(self, host: str) -> bool:
        """(Lock held.) Another controller may master ``host``'s switch (we do not)."""
        if self._gate is None or self._intent is None:
            return False
        found = self._intent.hosts.get(host)
        return found is not None and found.dpid is not None and not self._gate.masters(found.dpid)

    def _remote_applied(self, host: str) -> int:
        """(Lock held.) The revision another controller, master of ``host``'s switch, last
        published as applied there (-1: unknown, or we are its master)."""
        if not self._elsewhere(host):
            return -1
        found = self._intent.hosts[host] if self._intent is not None else None
        return self._remote.get(found.dpid, -1) if found is not None and found.dpid else -1

    def remote_applied(self, applied: dict[int, int]) -> None:
        """Every switch's applied revision as its master published it (the membership's
        tick): revisions waiting for hosts whose switch another controller masters end on it."""
        with self._lock:
            self._remote = dict(applied)
            for host in list(self._host_needs):
                if self._elsewhere(host):
                    self._states_dirty.add(host)
                    self._settle(host)
            self._settle_every()
            self._signal()

    def applied_revisions(self) -> dict[int, int]:
        """dpid -> applied revision of the connected switches we master (to publish)."""
        with self._lock:
            out = {}
            for dpid, sw in self._switches.items():
                if sw.connected and sw.host is not None and self._ours(sw):
                    applied = self._applied_revision(self._gen(sw.host))
                    if applied > 0:
                        out[dpid] = applied
            return out

    def _present(self) -> set[str]:
        """(Lock held.) Hosts whose switch is connected here, and ours to write."""
        return {
            sw.host for sw in self._switches.values() if sw.connected and sw.host and self._ours(sw)
        }

    def _need(self, revision: int, hosts: Iterable[str], every: bool = False) -> None:
        """(Lock held.) ``revision`` needs the generation wanted now of each of ``hosts``
        (``every``: they are all the hosts). Kept in O(hosts + revisions), not their product:
        each host keeps what the waiting revisions need of it (``_HostNeed``), a revision the
        hosts it waits for, or, when it touched every host, nothing (``None``)."""
        unmet: set[str] = set()
        for h in hosts:
            wanted = self._gen(h).wanted
            if self._met(h, wanted, revision):
                continue
            need = self._host_needs.get(h)
            if need is None:
                need = self._host_needs[h] = _HostNeed()
            need.add(wanted, revision)
            unmet.add(h)
        if not unmet:
            if revision not in self._needs:
                self._to_mark.add(revision)
            return
        self._to_mark.discard(revision)
        known = self._needs.get(revision, set())
        if every or known is None:
            if known is not None:
                heapq.heappush(self._needs_every, revision)
            self._needs[revision] = None
        else:
            self._needs[revision] = known | unmet
            for h in unmet:
                self._needs_by_host.setdefault(h, set()).add(revision)
        if len(self._needs) > MAX_NEEDS:  # a switch silent for very long: forget the oldest
            for old in sorted(self._needs)[: len(self._needs) - MAX_NEEDS + MAX_NEEDS // 10]:
                del self._needs[old]

    def _confirmed(self, host: str) -> None:
        """(Lock held.) ``host``'s applied generation (or its master's published revision)
        moved: settle the revisions it ends."""
        self._states_dirty.add(host)
        self._settle(host)
        self._settle_every()

    def _settle(self, host: str) -> None:
        """(Lock held.) The revisions naming ``host`` that it no longer holds back."""
        start = self._unmet_from(host)
        if start == NEVER:
            self._host_needs.pop(host, None)
        revisions = self._needs_by_host.get(host)
        if not revisions:
            return
        for revision in [r for r in revisions if r < start]:
            revisions.discard(revision)
            hosts = self._needs.get(revision)
            if hosts is None:  # done already, or waits for every host now
                continue
            hosts.discard(host)
            if not hosts:
                del self._needs[revision]
                self._to_mark.add(revision)
        if not revisions:
            del self._needs_by_host[host]

    def _settle_every(self) -> None:
        """(Lock held.) The revisions that touched every host and that none holds back."""
        heap = self._needs_every
        if not heap:
            return
        first = min((self._unmet_from(h) for h in list(self._host_needs)), default=NEVER)
        while heap and heap[0] < first:
            revision = heapq.heappop(heap)
            if revision in self._needs and self._needs[revision] is None:
                del self._needs[revision]
                self._to_mark.add(revision)

    def _forget_hosts(self, gone: Iterable[str]) -> None:
        """(Lock held.) Hosts that went hold back no revision."""
        gone = [h for h in gone if h in self._host_needs or h in self._needs_by_host]
        for host in gone:
            self._host_needs.pop(host, None)
            self._settle(host)
        if gone:
            self._settle_every()

    # -- switch events (called from os-ken's threads) --------------------------------------
    def switch_connected(self, conn: SwitchConn) -> bool:
        """A switch completed the handshake. Returns False if it was refused (and closed).

        A second connection for a connected dpid replaces the first only if the first has
        missed an echo or the new one's certificate names the dpid's host. The connection is
        admitted (flow dump, then flows) once its dpid is a registered host's; until then it
        is held and sent nothing.
        """
        replaced: SwitchConn | None = None
        with self._lock:
            old = self._switches.get(conn.dpid)
            host = self._host_of(conn.dpid)
            if host is not None and not self._cert_ok(conn, host):
                self._refuse(conn, self._cert_reason(conn, host))
                return False
            if old is not None and old.connected and old.conn is not conn:
                if old.conn.missed_echo():
                    why = "the connection it replaces missed an echo"
                elif host is not None and conn.peer_name == host:
                    why = f"it presents {host}'s certificate"
                else:
                    reason = f"dpid already connected from {old.conn.address}"
                    self._refuse(conn, reason)
                    return False
                log.warning(
                    "switch %016x: new connection from %s replaces %s (%s)",
                    conn.dpid, conn.address, old.conn.address, why,
                )  # fmt: skip
                replaced = old.conn
                old.dumping = False
                self._end_dump(old)  # the new connection is dumped anew
            if host is None and replaced is None and self._held() >= self._hold_limit():
                self._refuse(conn, f"{self._hold_limit()} connections already wait for admission")
                return False
            sw = _Switch(conn=conn, since=self._clock())
            self._switches[conn.dpid] = sw
            admit = host is not None and self._admit(sw, host)
            self._signal()
        if replaced is not None:
            replaced.close()
        if admit:
            self._connected(sw)
        elif replaced is not None:
            self._ask_dumps()
        else:
            log.info(
                "switch %016x from %s held: its dpid is no registered host's", conn.dpid,
                conn.address,
            )  # fmt: skip
        return True

    def _held(self) -> int:
        return sum(1 for sw in self._switches.values() if sw.connected and not sw.admitted)

    def _hold_limit(self) -> int:
        """(Lock held.) How many connections may wait for admission: ``MAX_HELD``; before
        the first intent read also one per host registered at start, since every dpid is
        unknown until then and a restarted controller's fleet reconnects at once (refused,
        each would come back later and be dumped later). A held connection is never sent
        anything nor trusted; past the first read, unknown dpids are back to ``MAX_HELD``."""
        if self._intent is None:
            return MAX_HELD + self._hosts_at_start
        return MAX_HELD

    def expire_held(self) -> int:
        """Close connections that waited over ``HOLD_TIMEOUT`` s for admission; how many."""
        now = self._clock()
        with self._lock:
            late = [
                sw
                for sw in self._switches.values()
                if sw.connected and not sw.admitted and now - sw.since > HOLD_TIMEOUT
            ]
            for sw in late:
                del self._switches[sw.conn.dpid]
                self._refuse(
                    sw.conn, f"its dpid is no registered host's after {HOLD_TIMEOUT:.0f} s"
                )
        return len(late)

    def _host_of(self, dpid: int) -> str | None:
        intent = self._intent
        if intent is None:
            return None
        host = intent.host_by_dpid(dpid)
        return host.name if host is not None else None

    def _cert_ok(self, conn: SwitchConn, host: str) -> bool:
        return not self._require_cert or conn.peer_name == host

    @staticmethod
    def _cert_reason(conn: SwitchConn, host: str) -> str:
        if conn.peer_name is None:
            return f"no certificate; the dpid is {host}'s"
        return f"its certificate names {conn.peer_name!r}, the dpid is {host}'s"

    def _refuse(self, conn: SwitchConn, reason: str) -> None:
        """Close ``conn`` and report why (called with the lock held)."""
        self.refused += 1
        log.warning("switch %016x from %s refused: %s", conn.dpid, conn.address, reason)
        self._emit("switch.refused", dpid=f"{conn.dpid:016x}", address=conn.address, reason=reason)
        conn.close()

    def _admit(self, sw: _Switch, host: str) -> bool:
        """Mark ``sw`` admitted for ``host`` (lock held); the caller asks for its dump."""
        sw.admitted = True
        sw.host = host
        sw.dumping = True
        sw.asked = False
        return True

    def _connected(self, sw: _Switch) -> None:
        conn = sw.conn
        log.info("switch %016x (%s) connected from %s", conn.dpid, sw.host, conn.address)
        self._emit("switch.connected", dpid=f"{conn.dpid:016x}", host=sw.host, address=conn.address)
        with self._lock:
            if self._gate is not None and not self._gate.may_write(conn.dpid, conn):
                sw.dumping = False  # not its master (yet): ``resync`` dumps it once it is
                return
            if sw.asked:
                return  # made us master since its admission: ``resync`` asked already
            self._want_dump(sw)
        self._ask_dumps()

    # -- flow dumps: at most ``max_dumps`` under way, the rest queued ----------------------
    def _want_dump(self, sw: _Switch) -> None:
        """(Lock held.) ``sw``'s flows must be read (again): it is queued for a dump slot
        (``_ask_dumps`` sends the request). A dump already under way no longer counts (its
        reply may predate what must be read): it is dropped when it comes, and the switch is
        queued first, to take the slot it freed."""
        sw.synced, sw.dumping, sw.asked = False, True, True
        sw.dump = _cookies()
        sw.forget_inflight()
        if sw.dump_out:
            self._drop_dump(sw)
            if not sw.queued:
                sw.queued = True
                self._dump_queue.appendleft(sw)
        elif not sw.queued:
            sw.queued = True
            self._dump_queue.append(sw)

    def _end_dump(self, sw: _Switch) -> None:
        """(Lock held.) ``sw``'s dump request no longer holds a slot."""
        if sw.dump_out:
            sw.dump_out = False
            self._dumps_out.discard(sw)

    def _drop_dump(self, sw: _Switch) -> None:
        """(Lock held.) ``sw``'s dump under way stops counting: its slot is free, and its
        reply, still to come, is dropped whole."""
        if sw.dump_out:
            self._end_dump(sw)
            sw.discard += 1
            sw.dump = _cookies()

    def _ask_dumps(self) -> None:
        """Ask the queued switches for their flows while fewer than ``max_dumps`` dumps are
        under way (called without the lock; the requests go out after it is released)."""
        ask = []
        with self._lock:
            while self._dump_queue and len(self._dumps_out) < self._max_dumps:
                sw = self._dump_queue.popleft()
                sw.queued = False
                if (
                    not sw.connected
                    or not sw.dumping
                    or sw.dump_out
                    or self._switches.get(sw.conn.dpid) is not sw
                ):
                    continue  # gone, replaced, stepped down, or asked already
                sw.dump_out, sw.dump_at = True, self._clock()
                self._dumps_out.add(sw)
                ask.append(sw)
            self.dumps_asked += len(ask)
            self.dumps_peak = max(self.dumps_peak, len(self._dumps_out))
        for sw in ask:
            sw.conn.request_flow_dump()

    @property
    def dumps_under_way(self) -> int:
        """Flow dumps asked for and not complete (tests, diagnostics)."""
        with self._lock:
            return len(self._dumps_out)

    @property
    def dumps_queued(self) -> int:
        """Switches waiting for a dump slot (tests, diagnostics)."""
        with self._lock:
            return sum(1 for sw in self._dump_queue if sw.dumping and sw.connected)

    def expire_dumps(self) -> int:
        """Close the switches whose dump under way sent no reply part for ``DUMP_TIMEOUT`` s
        (a switch that never answers must not hold a slot for ever); how many. Each one
        reconnects and is dumped anew."""
        now = self._clock()
        with self._lock:
            late = [sw for sw in self._dumps_out if now - sw.dump_at > DUMP_TIMEOUT]
            for sw in late:
                sw.dumping = False
                self._end_dump(sw)
        for sw in late:
            log.warning("switch %016x (%s): no flow dump reply for %.0f s, closing",
                        sw.conn.dpid, sw.host, DUMP_TIMEOUT)  # fmt: skip
            sw.conn.close()
        self._ask_dumps()  # also whatever was queued where no slot was looked for
        return len(late)

    def switch_dump(self, dpid: int, cookies: Iterable[int], more: bool) -> None:
        """Part of a flow dump arrived; the last part makes the switch synced and frees its
        slot for the next queued switch."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or not sw.connected:
                return
            if sw.discard:  # the reply of a dump that stopped counting
                if not more:
                    sw.discard -= 1
                return
            if not sw.dump_out or not sw.dumping:
                return  # not asked for (a held switch, or an unsolicited reply)
            sw.dump_at = self._clock()
            sw.dump.extend(cookies)
            too_long = len(sw.dump) > MAX_DUMP_FLOWS
            if too_long:
                sw.dump = _cookies()
                sw.dumping = False
                self._end_dump(sw)
            elif more:
                return
            else:
                gen = self._gens.get(sw.host) if sw.host is not None else None
                desired = gen.desired if gen is not None else None
                dumped = sw.dump
                if (
                    desired is not None
                    and len(dumped) == len(desired)
                    and sorted(dumped) == [f.cookie for f in desired]
                ):
                    sw.installed = Shared(desired)  # a restart's common case: no dict built
                else:
                    sw.installed = dict.fromkeys(dumped)
                sw.exact = None
                sw.dump = _cookies()
                sw.dumping = False
                self._end_dump(sw)
                sw.synced = True
                sw.forget_inflight()
        self._ask_dumps()
        if too_long:
            log.error("switch %016x (%s): flow dump over %d flows, closing", dpid, sw.host,
                      MAX_DUMP_FLOWS)  # fmt: skip
            sw.conn.close()
            return
        log.info("switch %016x synced: %d flows installed", dpid, len(sw.installed))
        with self._lock:
            if sw.host is not None:
                self._todo.add(sw.host)
        self._wake.set()

    def switch_drained(self, dpid: int) -> None:
        """A congested switch has read what was queued for it: bring it up to date."""
        log.info("switch %016x: send queue drained", dpid)
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is not None and sw.host is not None:
                self._todo.add(sw.host)
        self._wake.set()

    def budget_drained(self) -> None:
        """The sum of all switches' send queues is under its budget again: the switches left
        out meanwhile (still queued) get their batches."""
        self._wake.set()

    def switch_disconnected(self, dpid: int, conn: SwitchConn | None = None) -> None:
        """The connection closed (a newer connection of the same dpid is left alone)."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or (conn is not None and sw.conn is not conn):
                return
            sw.connected = False
            sw.synced = False
            sw.dumping = False
            freed = sw.dump_out
            self._end_dump(sw)
            sw.forget_inflight()
            sw.bundles.clear()  # a switch drops its open bundles with the connection
            self._signal()
            if not sw.admitted:
                del self._switches[dpid]
        if freed:
            self._ask_dumps()
        if not sw.admitted:
            log.info("switch %016x from %s disconnected before admission", dpid, sw.conn.address)
            return
        log.warning("switch %016x (%s) disconnected", dpid, sw.host or "unknown host")
        self._emit("switch.disconnected", dpid=f"{dpid:016x}", host=sw.host)

    def _ours(self, sw: _Switch) -> bool:
        """(Lock held.) Switch ``sw``'s readiness is this controller's to report."""
        return self._gate is None or self._gate.masters(sw.conn.dpid)

    def _mastered(self, host: str) -> bool:
        """(Lock held.) ``host``'s switch is this controller's (its generations are ours to
        save): no gate (the only controller), or its master."""
        if self._gate is None:
            return True
        found = self._intent.hosts.get(host) if self._intent is not None else None
        return found is not None and found.dpid is not None and self._gate.masters(found.dpid)

    def resync(self, dpid: int, conn: object) -> None:
        """We just became master of ``dpid`` over ``conn``: read its flows again (another
        master may have written), so the next pass sends only the difference."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or sw.conn is not conn or not sw.connected or not sw.admitted:
                return
            self._want_dump(sw)
        log.info("switch %016x (%s): master now, reading its flows", dpid, sw.host)
        self._ask_dumps()

    def resumed(self, dpid: int, conn: object) -> None:
        """We are ``dpid``'s master again with the generation we held before our lease
        lapsed (nobody else was granted it meanwhile): what we believe installed still holds,
        so no dump; only a host whose batch the lapse held back is queued again. (A switch
        never read yet, its dump not asked for while we could not write, is read now.)"""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or sw.conn is not conn or not sw.connected or not sw.admitted:
                return
            unread, behind = not sw.synced and not sw.dumping, False
            if not unread:
                gen = self._gens.get(sw.host) if sw.host is not None else None
                behind = sw.synced and gen is not None and sw.sent_gen != gen.wanted
                if behind and sw.host is not None:
                    self._todo.add(sw.host)
        if unread:
            self.resync(dpid, conn)
            return
        if sw.synced:  # "MASTER" then "synced" in the log reads as "writing to it"
            log.info("switch %016x synced: kept, %d flows installed as before (not read again)",
                     dpid, len(sw.installed))  # fmt: skip
        if behind:
            self._wake.set()

    def step_down(self, dpid: int, conn: object) -> None:
        """We are no longer ``dpid``'s master: batches in flight prove nothing (their barrier
        replies must not count as applied) and nothing more is sent until ``resync``."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or sw.conn is not conn:
                return
            sw.synced, sw.dumping, sw.dump = False, False, _cookies()
            freed = sw.dump_out
            self._drop_dump(sw)  # its slot goes to the next switch; its reply is dropped
            sw.forget_inflight()
            self._signal()
        if freed:
            self._ask_dumps()

    def barrier_reply(self, dpid: int, xid: int) -> None:
        """A barrier came back: everything sent before it is applied (or, for a bundle's
        prepare barrier, every message of the bundle was answered: commit or discard it)."""
        if tpoints.ON:
            tpoints.mark("c_barrier_in", f"{dpid:x}:{xid}")
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None:
                return
            bundle = next((b for b in sw.bundles if b.prepare_xid == xid), None)
            if bundle is not None:
                out = self._prepared(sw, bundle)
            elif xid not in sw.pending:
                return
        if bundle is not None:
            self._send_after(sw, out)
            with self._lock:  # what waited for this bundle's commit (``push``) may go now
                if sw.host is not None:
                    self._todo.add(sw.host)
            self._wake.set()
            return
        with self._lock:
            popped = sw.pending.pop(xid, None)
            if popped is None:
                return
            generation = popped if sw.pending else max(popped, sw.sent_gen)
            for bx in list(sw.batches):  # batches before this barrier are done too
                batch = sw.batches.pop(bx)
                for cookie in batch.cookies() if sw.held else ():
                    held = sw.held.get(cookie)
                    if held is not None and held.sent:
                        del sw.held[cookie]  # accepted this time
                if bx == xid:
                    break
            host = sw.host
            converged, applied = not sw.pending, 0
            if host is not None:
                gen = self._gen(host)
                if generation > gen.applied:
                    gen.applied = generation
                    if generation >= sw.sent_gen:
                        gen.applied_rev = max(gen.applied_rev, sw.sent_rev)
                    self._confirmed(host)
                    self._signal()
                applied = self._applied_revision(gen)
        if converged:
            self._emit("switch.converged", dpid=f"{dpid:016x}", host=host, revision=applied)

    def _prepared(self, sw: _Switch, b: _Bundle) -> tuple[bytes, bool]:
        """(Lock held.) ``b``'s messages were all answered: the bytes that commit it (and
        its batch's barrier) or discard it, and whether the switch must be dumped again."""
        if b.failed is None and sw.synced and sw.connected:
            b.committing = True
            data = ofmsg.bundle_ctrl_bytes(b.bundle_id, ofmsg.BUNDLE_COMMIT, b.commit_xid)
            return data + ofmsg.barrier_bytes(b.final_xid), False
        sw.bundles.remove(b)
        self.bundles_discarded += 1
        resync = sw.synced  # not yet asked for a dump (a failure of this bundle)
        log.warning("switch %016x (%s): bundle %#x not committed: %s", sw.conn.dpid, sw.host,
                    b.bundle_id, b.failed or "the switch is not synced")  # fmt: skip
        if resync:
            self._redump(sw)
        if b.refused:
            return b"", resync
        return ofmsg.bundle_ctrl_bytes(b.bundle_id, ofmsg.BUNDLE_DISCARD, sw.xid()), resync

    def _redump(self, sw: _Switch) -> None:
        """(Lock held.) The installed model is no longer known: dump the switch again (the
        caller calls ``_ask_dumps`` once the lock is released)."""
        self._want_dump(sw)
        self._signal()

    def _send_after(self, sw: _Switch, out: tuple[bytes, bool]) -> None:
        data, redump = out
        if data and not sw.conn.send(data):
            log.warning("switch %016x closed while sending", sw.conn.dpid)
            return
        if redump:
            self._ask_dumps()

    def bundle_reply(self, dpid: int, xid: int, kind: int) -> None:
        """A bundle control reply (open, commit or discard) came back."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None:
                return
            b = sw.bundle_of(xid)
            if kind != ofmsg.BUNDLE_COMMIT_REPLY or b is None or b.commit_xid != xid:
                return
            sw.bundles.remove(b)
            self.bundles_committed += 1
        log.info("switch %016x (%s): bundle %#x committed (%d messages)", dpid, sw.host,
                 b.bundle_id, len(b.xids))  # fmt: skip

    def _emit(self, kind: str, **data: Any) -> None:
        """Tell ``on_event`` (the event hub) what happened; its failure never reaches a switch."""
        if self._on_event is None:
            return
        try:
            self._on_event(kind, **data)
        except Exception:
            log.exception("event sink failed on %s", kind)

    def switch_error(self, dpid: int, xid: int, text: str) -> None:
        """The switch rejected a message. A rejected add is held back with backoff (never
        resent in a loop); the rest of its batch stands (in a bundle: is sent again in the
        next one). Anything else is logged."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None:
                return
            sw.errors += 1
            bundle = sw.bundle_of(xid)
            outcome = self._bundle_error(sw, bundle, xid, text) if bundle is not None else None
            sent = None
            if outcome is None:
                sent = next((b.pop(xid) for b in sw.batches.values() if xid in b), None)
            if sent is not None:
                sw.exact = None
                sw.installed = installed = editable(sw.installed)
                installed.pop(sent.cookie, None)
                if sent.replaced is not None:  # the switch kept the flow it would replace
                    installed[sent.replaced[0]] = sent.replaced[1]
                before = sw.held.get(sent.cookie)
                attempts = before.attempts + 1 if before is not None else 1
                delay = min(QUARANTINE_BASE * 2 ** (attempts - 1), QUARANTINE_MAX)
                sw.held[sent.cookie] = _Held(self._clock() + delay, attempts, text)
            host = sw.host
            if sent is not None and host is not None:  # its installed model changed: diff
                self._todo.add(host)
        if outcome == "redump":
            self._ask_dumps()
        if sent is None:
            if outcome is None:
                log.error("switch %016x (%s) error for xid %#x: %s", dpid, host, xid, text)
            return
        log.error(
            "switch %016x (%s) rejected flow %016x (%s): held back, retry in %.0f s "
            "(rejection %d)", dpid, host, sent.cookie, text, delay, attempts,
        )  # fmt: skip
        self._emit(
            "switch.flow_rejected", dpid=f"{dpid:016x}", host=host,
            cookie=f"{sent.cookie:016x}", error=text, retry_in=delay, attempts=attempts,
        )  # fmt: skip
        self._wake.set()  # the worker's timer learns the new retry time

    def _bundle_error(self, sw: _Switch, b: _Bundle, xid: int, text: str) -> str | None:
        """(Lock held.) An error about bundle ``b``: None if it refused one of the bundle's
        messages (held back by the caller as without bundles), "done", or "redump" (the
        caller asks for a flow dump)."""
        if xid == b.open_xid:
            b.failed, b.refused, sw.bundles_ok = f"open refused ({text})", True, False
            log.warning("switch %016x (%s) refused a bundle (%s): plain flow-mods from now on",
                        sw.conn.dpid, sw.host, text)  # fmt: skip
            return "done"
        if b.refused:
            return "done"  # a message for the bundle it never opened
        if xid == b.commit_xid:  # nothing of the batch was applied
            b.failed = f"commit failed ({text})"
            if b in sw.bundles:
                sw.bundles.remove(b)
            self.bundles_discarded += 1
            log.warning("switch %016x (%s): bundle %#x commit failed (%s): dumping it again",
                        sw.conn.dpid, sw.host, b.bundle_id, text)  # fmt: skip
            if not sw.synced:
                return "done"
            self._redump(sw)
            return "redump"
        b.failed = b.failed or f"message {xid:#x} refused ({text})"
        return None

    # -- worker ----------------------------------------------------------------------------
    def _next_retry(self) -> float | None:
        """When the earliest held flow may be tried again (None: nothing waits)."""
        with self._lock:
            times = [
                h.until
                for sw in self._switches.values()
                if sw.connected
                for h in sw.held.values()
                if not h.sent
            ]
        return min(times) if times else None

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            wait = self._poll
            retry = self._next_retry()
            if retry is not None:
                wait = max(0.0, min(wait, retry - self._clock()))
            woken = self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.expire_held()
            self.expire_dumps()
            with self._lock:
                dirty, self._dirty = self._dirty, False
            try:
                start = time.perf_counter()
                if dirty or not woken or self._intent is None:
                    self.refresh()
                self._retry_held()
                self.push()
                self.passes += 1
                if self.on_pass is not None:
                    self.on_pass(time.perf_counter() - start)
                if not woken or self._clock() >= self._next_housekeeping:
                    # Waiting requests mark their own endpoints; this catches the rest, once
                    # per poll interval, so it rarely contends for the database with requests.
                    self._housekeeping()
            except Exception:
                log.exception("reading intent failed; flows left as they are")
                with self._lock:
                    self._dirty = True
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()
                continue
            backoff = 0.1

    def refresh(self) -> None:
        """Bring the model up to the database: the change log since its revision, or a full
        read (at start, after a gap in the log, without a change reader, or as the audit)."""
        intent = self._intent
        audit = intent is not None and self._clock() >= self._next_audit
        with self._sessions() as session:
            if intent is None:
                self._adopt(self._load_snapshot(session))
                return
            if self._read_changes is None:
                if self._load_revision(session) != intent.revision or audit:
                    self._adopt(self._load_snapshot(session))
                return
            read = self._read_changes(session, intent.revision)  # opens a snapshot read
            if read is None:
                log.info("change log does not reach revision %d: full read", intent.revision)
                self._adopt(self._load_snapshot(session))
                return
            revision, groups = read
            if groups or revision != intent.revision:
                self.apply(revision, groups)
            if audit:  # same transaction as the change read: same revision
                if self._load_page is None:
                    self._audit(self._load_snapshot(session), None)
                    return
                if self._page == 0:
                    self._pages = self._pages_for(intent)
                page, hosts = self._load_page(session, self._page, self._pages)
                if not self._audit(page, hosts):
                    self._adopt(self._load_snapshot(session))  # a difference: a full read

    def _pages_for(self, intent: Intent) -> int:
        """The pages of an audit cycle: ~``audit_page_endpoints`` bound endpoints each, at
        most one per host (a page is a slice of the hosts)."""
        pages = -(-len(intent.endpoints) // self._page_size)
        return max(1, min(pages, len(intent.hosts)))

    def apply(self, revision: int, groups: list[tuple[int, list[Change]]]) -> None:
        """Apply the change log's rows, by revision, and recompute the hosts they touch."""
        intent = self._intent
        assert intent is not None
        touched: set[str] = set()
        full: set[str] = set()
        patches: dict[str, list[tuple[frozenset[Flow], frozenset[Flow]]]] = {}
        by_revision: list[tuple[int, frozenset[str]]] = []
        known = _Computed(self._gens)
        hosts_named = {c.key for _, cs in groups for c in cs if c.kind == HOST}
        with self._lock:  # os-ken's threads look hosts up by dpid
            dpids_before = {h: _dpid_of(intent, h) for h in hosts_named}
            for rev, changes in groups:
                deltas = apply_deltas(intent, changes, rev, known)
                hosts = deltas.hosts
                by_revision.append((rev, hosts))
                touched |= hosts
                full |= deltas.full
                for host, patch in deltas.patch.items():
                    patches.setdefault(host, []).append(patch)
            intent.revision = max(intent.revision, revision)
            switches_moved = any(_dpid_of(intent, h) != d for h, d in dpids_before.items())
        if switches_moved and self.on_switches is not None:
            self.on_switches()
        self._recompute(full)
        self._patch({h: p for h, p in patches.items() if h not in full}, intent)
        with self._lock:
            self._forget_hosts(h for h in touched if h not in intent.hosts)
            for rev, hosts in by_revision:
                every = len(hosts) >= len(intent.hosts) and hosts >= intent.hosts.keys()
                self._need(rev, (h for h in hosts if h in intent.hosts), every)
            self._revision = intent.revision  # readiness of these revisions is now known
            self._admit_known()
            self._signal()

    def _audit(self, read: Snapshot, hosts: frozenset[str] | None) -> bool:
        """Compare the model with a read of the same revision: a full read (``hosts`` None),
        adopted if not equal, or one page (networks, hosts, blocks and the endpoints of
        ``hosts``), compared with the model's endpoints of the same hosts; False: it
        differs, the caller adopts a full read. The last page of a cycle counts an audit."""
        assert self._intent is not None
        self.audit_pages += 1
        if hosts is None:
            self._page, self._pages = 0, 1
        else:
            self._page = (self._page + 1) % self._pages
        if self._page == 0:
            self.audits += 1
            self._prune_due = True
        self._next_audit = self._clock() + self._audit_every / self._pages
        found = diff_views(read, self._intent.snapshot(hosts))
        if read.revision != self._intent.revision:
            found.append(f"revision {self._intent.revision}, database {read.revision}")
        if not found:
            return True
        self.audit_mismatches += 1
        where = "" if hosts is None else f" (page of {len(hosts)} hosts)"
        log.error(
            "audit%s: the in-memory intent differs from the database: %s", where, "; ".join(found)
        )
        self._emit("engine.audit_mismatch", revision=read.revision, differences=found)
        if hosts is None:
            self._adopt(read)
        return False

    def sync_all(self, snap: Snapshot) -> None:
        """Adopt ``snap`` as a full read, then bring the switches whose flows changed to it
        (and those holding a rejected flow whose time came)."""
        self._adopt(snap)
        self._retry_held()
        self.push()

    def _adopt(self, snap: Snapshot) -> None:
        """Take a full read as the model: every host is recomputed. Pending endpoints need
        the hosts they touch; and, after the first read, each revision the read skipped
        (at most ``MAX_SPAN``) needs every host whose flows it changed, since a full read
        does not say which revision changed what."""
        self.full_reads += 1
        intent = Intent.from_snapshot(snap)
        with self._lock:
            before = set(self._intent.hosts) if self._intent is not None else set()
            since = self._revision
            dpids_before = _dpids(self._intent)
        if self.on_switches is not None and _dpids(intent) != dpids_before:
            self.on_switches()
        changed = self._recompute(before | set(intent.hosts), intent)
        with self._lock:
            self._intent = intent
            # a full read compared everything: the audit's cycle starts again
            self._page = 0
            self._pages = self._pages_for(intent) if self._load_page is not None else 1
            self._next_audit = self._clock() + self._audit_every / self._pages
            self._forget_hosts(before - intent.hosts.keys())
            if 0 <= since < intent.revision <= since + MAX_SPAN:
                mine = [h for h in changed if h in intent.hosts]
                # Which of the skipped revisions changed what is not known: each needs every
                # host that changed (all hosts, kept as such, when that is most of them).
                every = 2 * len(mine) > len(intent.hosts)
                for revision in range(since + 1, intent.revision + 1):
                    self._need(revision, intent.hosts if every else mine, every)
            everyone = list(intent.hosts)
            for ep in snap.endpoints:
                if ep.state is EndpointState.PENDING and ep.host is not None:
                    hosts = intent.endpoint_hosts((ep.network, ep.name))
                    if hosts is None:
                        self._need(ep.bound_rev, everyone, True)
                    else:
                        self._need(ep.bound_rev, hosts)
            self._revision = intent.revision
            self._admit_known()
            self._signal()

    def _recompute(self, hosts: Iterable[str], intent: Intent | None = None) -> set[str]:
        """Desired flows of ``hosts`` in ``intent`` (the model by default); a host whose
        flows changed gets a new wanted generation and its switch is queued (a host that went
        keeps its switch's flows). Returns the hosts whose flows changed."""
        intent = intent or self._intent
        assert intent is not None
        fresh: dict[str, tuple[Flow, ...] | None] = {}
        remote = RemoteFlows(intent, intent.index)  # shared by the hosts computed here
        for host in hosts:
            if host in intent.hosts:
                fresh[host] = _unique(desired_list(intent, host, intent.index, remote))
                self.recomputed += 1
            else:
                fresh[host] = None
        changed = set()
        with self._lock:
            for host, desired in fresh.items():
                gen = self._gen(host)
                if desired == gen.desired:
                    continue
                gen.desired = desired
                gen.base, gen.delta = -1, None
                changed.add(host)
                if desired is not None:
                    gen.wanted += 1
                    gen.wanted_rev = intent.revision
                    self._todo.add(host)
                    self._states_dirty.add(host)
        return changed

    def _patch(
        self, patches: dict[str, list[tuple[frozenset[Flow], frozenset[Flow]]]], intent: Intent
    ) -> None:
        """Apply what endpoints took from and gave to their hosts' desired flows (in the
        order of their revisions): O(their flows) bisections in the cookie-ordered tuple, not
        a recomputation of the host; what they took and gave is also kept as the host's
        delta since ``_Gen.base``, which ``_sync_switch`` sends as the batch."""
        with self._lock:
            for host, steps in patches.items():
                gen = self._gen(host)
                desired = gen.desired
                assert desired is not None, "only hosts with computed flows are patched"
                if gen.delta is None:
                    gen.base, gen.delta = gen.wanted, ({}, {})
                taken, given = gen.delta
                flows = list(desired)  # in cookie order: found by bisection, O(log n) each
                changed = False
                for gone, new in steps:
                    for f in gone:
                        i = bisect_left(flows, f.cookie, key=_cookie)
                        if i < len(flows) and flows[i].cookie == f.cookie:
                            del flows[i]
                            changed = True
                            if given.pop(f.cookie, None) is None:
                                taken[f.cookie] = f
                    for f in new:
                        i = bisect_left(flows, f.cookie, key=_cookie)
                        if i == len(flows) or flows[i].cookie != f.cookie:
                            flows.insert(i, f)
                            changed = True
                            if taken.pop(f.cookie, None) is None:
                                given[f.cookie] = f
                self.patched += 1
                if 2 * (len(taken) + len(given)) > len(flows):
                    gen.base, gen.delta = -1, None  # as cheap to diff in full
                packed = tuple(flows)
                if not changed or packed == desired:
                    continue
                gen.desired = packed
                gen.wanted += 1
                gen.wanted_rev = intent.revision
                self._todo.add(host)
                self._states_dirty.add(host)

    def _admit_known(self) -> None:
        """(Lock held.) Admit held switches whose dpid is now a registered host's."""
        assert self._intent is not None
        for sw in list(self._switches.values()):
            if not sw.connected or sw.admitted:
                continue
            host = self._intent.host_by_dpid(sw.conn.dpid)
            if host is None:
                continue
            if not self._cert_ok(sw.conn, host.name):
                del self._switches[sw.conn.dpid]
                self._refuse(sw.conn, self._cert_reason(sw.conn, host.name))
                continue
            self._admit(sw, host.name)
            self._admitted.append(sw)

    def _retry_held(self) -> None:
        """Queue the switches holding a rejected flow whose time came."""
        now = self._clock()
        with self._lock:
            for sw in self._switches.values():
                if (
                    sw.held  # most have none: no generator per switch and pass
                    and sw.connected
                    and sw.host
                    and any(not h.sent and h.until <= now for h in sw.held.values())
                ):
                    self._todo.add(sw.host)

    def push(self) -> None:
        """Send what changed to every queued host's switch (if connected and synced), and
        ask newly admitted switches for their flows."""
        with self._lock:
            admitted, self._admitted = self._admitted, []
            todo, self._todo = self._todo, set()
            intent = self._intent
            if intent is None or intent.dpids is not self._dpids_seen:
                by_host = {
                    sw.host: sw
                    for sw in self._switches.values()
                    if sw.connected and sw.synced and sw.host is not None
                }
                # a switch whose dpid now names another host (re-registered) follows it
                if intent is not None:
                    self._dpids_seen = intent.dpids
                    for sw in by_host.values():
                        host = intent.host_by_dpid(sw.conn.dpid)
                        if host is not None and host.name != sw.host:
                            sw.host = host.name
                            todo.add(host.name)
                    by_host = {sw.host: sw for sw in by_host.values() if sw.host is not None}
            else:  # the hosts' dpids are as at the last scan: only the queued hosts' switches
                by_host = {}
                for name in todo:
                    host = intent.hosts.get(name)
                    found = self._switches.get(host.dpid) if host and host.dpid else None
                    if found and found.connected and found.synced and found.host == name:
                        by_host[name] = found
        for sw in admitted:
            self._connected(sw)
        for name in sorted(todo):
            target = by_host.get(name)
            if target is None:
                continue
            if target.conn.congested():  # left out until ``switch_drained``: nothing lost
                with self._lock:
                    self._todo.add(name)
                continue
            with self._lock:
                # A bundle whose commit is not sent yet applies at its commit: a batch sent
                # now would reach the switch first and be undone by it. Left out until the
                # commit is sent (``barrier_reply`` queues the host again).
                uncommitted = any(not b.committing for b in target.bundles)
                if uncommitted:
                    self._todo.add(name)
            if uncommitted:
                continue
            self._sync_switch(target, name)

    def _sync_switch(self, sw: _Switch, host: str) -> None:
        with self._lock:
            if self._gate is not None and not self._gate.may_write(sw.conn.dpid, sw.conn):
                return  # not (or no longer) this switch's confirmed master: write nothing
            gen = self._gens.get(host)
            if gen is None or gen.desired is None:
                return
            desired = gen.desired
            replaced: dict[FlowKey, tuple[int, Flow]] | None = None
            held = bool(sw.held)
            if held:
                desired = self._without_held(sw, desired)
            exact = sw.exact
            if (
                not held
                and gen.delta is not None
                and exact
                and exact[0] is gen
                and exact[1] == gen.base
            ):
                # the switch holds generation ``base``: its batch is the patches since
                taken, given = gen.delta
                changes, replaced = diff_patch(sw.installed, taken.values(), given.values())
                self.patch_batches += 1
            else:
                changes = diff(desired, sw.installed)
            sw.sent_gen, sw.sent_rev = gen.wanted, gen.wanted_rev
            if held:
                sw.exact = None
            else:  # the switch holds ``desired`` once this batch is applied
                gen.base = gen.wanted
                sw.exact = (gen, gen.base)
                gen.delta = ({}, {}) if gen.delta is not None else None
            if not changes:  # holds the same cookies: keep it as a view of the tuple
                sw.installed = settled(desired, sw.installed)
                if not sw.pending and gen.applied < gen.wanted:
                    gen.applied, gen.applied_rev = gen.wanted, gen.wanted_rev
                    self._confirmed(host)
                    self._signal()
                return
            data, barrier_xid, sent = self._encode(sw, changes, replaced)
            if replaced is None:
                sw.installed = settled(desired, apply(sw.installed, changes))
            elif isinstance(sw.installed, dict):
                apply_patch(sw.installed, changes, replaced)
            else:  # a view of generation ``base``'s flows: the switch now holds ``desired``
                sw.installed = Shared(desired)
            sw.pending[barrier_xid] = gen.wanted
            sw.batches[barrier_xid] = sent
            if tpoints.ON:  # the barrier's round trip, with the fleet's f_barrier (bench.fleet)
                tpoints.mark("c_barrier_out", f"{sw.conn.dpid:x}:{barrier_xid}")
        log.info(
            "switch %016x (%s): generation %d (rev %d), +%d -%d flows",
            sw.conn.dpid,
            host,
            sw.sent_gen,
            sw.sent_rev,
            len(changes.adds),
            len(changes.deletes),
        )
        for chunk in data:
            if not sw.conn.send(chunk):
                log.warning("switch %016x closed while sending", sw.conn.dpid)
                return

    def _without_held(self, sw: _Switch, desired: tuple[Flow, ...]) -> tuple[Flow, ...]:
        """``desired`` less the flows held back (lock held); entries no longer desired go,
        and those whose time came are marked as sent again."""
        now = self._clock()
        wanted = {f.cookie for f in desired}
        for cookie in [c for c in sw.held if c not in wanted]:
            del sw.held[cookie]
        hold = set()
        for cookie, held in sw.held.items():
            if held.until > now:
                hold.add(cookie)
            elif cookie not in sw.installed:
                held.sent = True
        return tuple(f for f in desired if f.cookie not in hold) if hold else desired

    def _bundled(self, sw: _Switch, changes: Changes, replaces: bool) -> bool:
        """Whether this batch goes as one bundle (see the module docstring)."""
        if self._bundles == "never" or not sw.bundles_ok:
            return False
        if self._bundles == "always":
            return True
        return bool(changes.adds) and (bool(changes.deletes) or replaces)

    def _encode(
        self,
        sw: _Switch,
        changes: Changes,
        replaced: dict[FlowKey, tuple[int, Flow]] | None = None,
    ) -> tuple[list[bytes], int, _Batch]:
        """(Lock held.) The batch's wire bytes in chunks of about ``SEND_CHUNK``, the xid of
        the barrier that confirms it, and its adds; a bundle is registered on ``sw``.
        ``replaced``: the installed flows the adds replace, by key, when known (a patch);
        else found among the installed flows."""
        chunks: list[bytes] = []
        buf = bytearray()
        by_key = replaced
        if by_key is None:
            keys = {f.key() for f in changes.adds}
            by_key = {
                k: (c, f)
                for c, f in sw.installed.items()
                if f is not None and (k := f.key()) in keys
            } if keys else {}  # fmt: skip
        msgs: list[bytes] = []
        sent = _Batch(sw.next_xid, changes.adds)
        for i, f in enumerate(changes.adds):
            xid = sw.xid()
            if i == 0:
                sent.first = xid
            old = by_key.get(f.key()) if by_key else None
            if old is not None:
                sent.replaced[i] = old
            msgs.append(ofmsg.add_bytes(f, xid))
        msgs.extend(ofmsg.delete_bytes(cookie, sw.xid()) for cookie in changes.deletes)
        bundle = None
        if self._bundled(sw, changes, bool(sent.replaced)):
            open_xid = sw.xid()
            xids = frozenset(ofmsg.xid_of(m) for m in msgs)
            buf += ofmsg.bundle_ctrl_bytes(open_xid, ofmsg.BUNDLE_OPEN, open_xid)
            msgs = [ofmsg.bundle_add_bytes(open_xid, m) for m in msgs]
            bundle = _Bundle(open_xid, open_xid, sw.xid(), sw.xid(), sw.xid(), xids)
        for m in msgs:
            buf += m
            if len(buf) >= SEND_CHUNK:
                chunks.append(bytes(buf))
                buf = bytearray()
        if bundle is not None:
            sw.bundles.append(bundle)
            barrier_xid = bundle.final_xid  # sent with the commit
            buf += ofmsg.barrier_bytes(bundle.prepare_xid)
        else:
            barrier_xid = sw.xid()
            buf += ofmsg.barrier_bytes(barrier_xid)
        chunks.append(bytes(buf))
        return chunks, barrier_xid, sent

    def _housekeeping(self) -> None:
        """Record in the database what waits there: endpoints now ready, the switches'
        generations (``switch_state``), and after an audit the change log's old rows."""
        self._next_housekeeping = self._clock() + self._poll
        with self._lock:
            revisions, self._to_mark = self._to_mark, set()
            dirty, self._states_dirty = self._states_dirty, set()
            states = {
                h: (g.wanted, g.applied)
                for h in dirty
                if (g := self._gens.get(h)) is not None and self._mastered(h)
            }
            prune, self._prune_due = self._prune_due, False
        if self._save_states is None:
            states = {}
        if not (revisions or states or (prune and self._prune_log)):
            return
        try:
            with self._sessions() as session:
                if revisions:
                    self._mark_ready(session, sorted(revisions))
                if states and self._save_states is not None:
                    self._save_states(session, states)
                if prune and self._prune_log is not None:
                    gone = self._prune_log(session)
                    if gone:
                        log.info("change log: %d old rows pruned", gone)
                session.commit()
        except Exception:
            with self._lock:
                self._to_mark |= revisions
                self._states_dirty |= set(states)
            raise


def _dump_state(sw: _Switch) -> str | None:
    """A switch's flow dump as ``SwitchStatus.flow_dump`` tells it."""
    if sw.dump_out:
        return "under_way"
    if sw.queued and sw.dumping and sw.connected:
        return "queued"
    return None


def _dpid_of(intent: Intent, host: str) -> int | None:
    """The datapath id of ``host``'s switch in ``intent`` (None: no such host, or none yet)."""
    found = intent.hosts.get(host)
    return found.dpid if found is not None else None


def _dpids(intent: Intent | None) -> dict[str, int]:
    """Every host's datapath id in ``intent`` (hosts without one left out)."""
    if intent is None:
        return {}
    return {name: h.dpid for name, h in intent.hosts.items() if h.dpid is not None}
