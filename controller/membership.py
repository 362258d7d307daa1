"""This controller's membership of the cluster: a lease in the database, renewed every second.

One thread runs ``members.tick`` every ``renew_every`` seconds (and at once when poked: a
host's switch came or went, a switch refused our writes; and, while another member is live,
a switch converged or a write was made): it renews the lease
(``lease`` seconds), publishes the revision each of our switches applied (so a controller
that does not master a host's switch can still answer ``wait_ready``) and rebalances
mastership, then hands ``Roles`` our switches and the lease's deadline on this
process's monotonic clock, counted from *before* the renewal was sent, so it ends no later
than the database's ``expires_at`` that the other members judge us by. After a lapse
(a paused process, a database outage, which lapses every lease at once) the first renewals
for one lease period do not rebalance: the others get the time to renew before anyone takes
their switches, so an outage does not end in a round of needless takeovers.

A renewal that fails (database down, locked) leaves the deadline where it was: once it
passes, ``Roles`` refuses every write by itself; ``lapse`` is called too, so the roles are
asked again when the database is back. A lapse is not a step-down by itself: the renewal
that comes back (late, or after the outage) keeps every switch the database still assigns
us with the same generation id, without a flow dump (``Roles.assigned``); a switch another
member was granted meanwhile, or every switch if our member row was gone, is stepped down.
A clean stop removes our row and frees our switches (the others take them at their next
tick instead of after the lease).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session

from controller.db import members
from controller.roles import Roles

log = logging.getLogger(__name__)

FORGET_EVERY = 60.0  # s between removals of long-dead members' rows
MIN_GAP = 0.25  # s between two ticks at least: a burst of writes makes one tick, not one each


def new_member_id() -> str:
    """A random member id (one per process start)."""
    return uuid.uuid4().hex


class Membership:
    """Keeps this controller's lease and feeds ``roles`` with its switches."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        roles: Roles,
        *,
        member_id: str,
        api_url: str,
        openflow: str,
        lease: float = 3.0,
        renew_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        applied: Callable[[], dict[int, int]] | None = None,
        on_applied: Callable[[dict[int, int]], None] | None = None,
    ) -> None:
        if renew_every >= lease:
            raise ValueError(f"renew_every ({renew_every} s) must be below lease ({lease} s)")
        self.id = member_id
        self.api_url = api_url
        self.openflow = openflow
        self.lease = lease
        self.renew_every = renew_every
        self._sessions = sessions
        self._roles = roles
        self._clock = clock
        self._applied = applied  # our switches' applied revisions, published every tick
        self._on_applied = on_applied  # every master's, as read back
        self._published: dict[int, int] = {}  # what we last wrote (dpid -> revision)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forgot_at = float("-inf")
        self.lease_until = float("-inf")
        self._grace_until = float("-inf")  # no rebalancing before (after a lapse)
        self.last: members.Tick | None = None
        self.renewals = 0
        self.failures = 0

    def start(self) -> None:
        """Renew once now (so the first batch waits for nothing), then in a thread."""
        self.renew()
        self._thread = threading.Thread(target=self._run, name="vxplane-membership", daemon=True)
        self._thread.start()

    def stop(self, leave: bool = True) -> None:
        """Stop renewing; with ``leave``, remove our row and free our switches."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._roles.lapse()
        if leave:
            try:
                with self._sessions() as session:
                    members.leave(session, self.id)
                    session.commit()
            except Exception as exc:
                log.warning("controller %s: leaving the cluster failed: %s", self.id, exc)

    def poke(self) -> None:
        """Renew and rebalance now (hosts or switches changed)."""
        self._wake.set()

    def poke_shared(self) -> None:
        """Renew now if another member may be waiting on what a renewal publishes or reads
        (a switch of ours converged: its applied revision, for their ``wait_ready``; a write:
        theirs, for ours). Alone in the cluster (the last renewal saw no other live member)
        nobody is: the periodic renewal is enough. At 1,000 switches a renewal reads every
        switch's row, and under churn these pokes ran one every ``MIN_GAP``."""
        last = self.last
        if last is None or last.live != (self.id,):
            self._wake.set()

    def renew(self) -> members.Tick | None:
        """One renewal and rebalance; None if the database could not be reached."""
        started = self._clock()
        try:
            with self._sessions() as session:
                applied = self._applied() if self._applied is not None else {}
                fresh = {d: r for d, r in applied.items() if self._published.get(d) != r}
                lapsed = self.renewals > 0 and started >= self.lease_until
                if lapsed:  # the others' leases may have lapsed with ours: let them renew
                    self._grace_until = started + self.lease
                tick = members.tick(
                    session, self.id, self.api_url, self.openflow, self.lease, fresh,
                    rebalance=started >= self._grace_until,
                )  # fmt: skip
                session.commit()
                if started - self._forgot_at > FORGET_EVERY:
                    self._forgot_at = started
                    members.forget_dead(session, tick.now)
                    session.commit()
        except Exception as exc:
            self.failures += 1
            if self._clock() >= self.lease_until > float("-inf"):
                log.error("controller %s: lease lapsed (%s): writing nothing", self.id, exc)
                self._roles.lapse()
                self.lease_until = float("-inf")
            else:
                log.warning("controller %s: lease renewal failed: %s", self.id, exc)
            return None
        self._published.update(fresh)  # only changes are written next time
        self.renewals += 1
        if tick.moved:
            log.info(
                "mastership: %d switch(es) moved; %d live controller(s); this one masters %d",
                tick.moved, len(tick.live), len(tick.mine),
            )  # fmt: skip
        self.lease_until = started + self.lease
        self.last = tick
        self._roles.assigned(tick.mine, tick.generations, self.lease_until, tick.rejoined)
        if self._on_applied is not None:
            self._on_applied(tick.applied)
        return tick

    def _run(self) -> None:
        # Renewals start every ``renew_every`` from the last one's start, not from its end
        # plus ``MIN_GAP``: that made 1.25 s plus a renewal's time between two starts, and
        # a starved controller's lease (3 s) lapsed when two renewals took 1.75 s together
        # (while writes poked the thread on every write, the pokes had hidden it).
        next_at = self._clock() + self.renew_every
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_at - self._clock()))
            self._wake.clear()
            if self._stop.is_set():
                break
            next_at = self._clock() + self.renew_every
            self.renew()
            self._stop.wait(MIN_GAP)
