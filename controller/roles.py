"""OpenFlow roles of this controller on each switch: the fence that decides who may write.

The database says which switches this controller masters and with which generation id
(``controller.db.members.tick``, every second, through ``Membership``); ``Roles`` turns that
into role requests on each switch connection and keeps what the switches answered:

- a switch we master is asked for MASTER with its generation id; the others for SLAVE with
  the current generation id (so a slave request never makes the switch forget a newer one);
- ``may_write(dpid, conn)`` is true only while our lease is valid (checked against the clock
  at every call: a lapsed lease stops writing at once), the database says we master the
  switch with generation ``g``, and this very connection's switch answered a role request
  making us MASTER with ``g``. A new connection starts EQUAL, which could write: it may not;
- the switch refusing a write with IS_SLAVE, or a role request with STALE, means another
  controller holds a newer generation: we step down on that switch at once (``on_step_down``)
  and ask the membership for a fresh view (``on_refused``); so do a connection that closes,
  or is replaced, while we hold MASTER on it (a member paused past its lease finds its
  connections dropped: the agents removed its target from br-int). No MASTER role is ever
  lost without a "stepping down" line in the log;
- the MASTER answer calls ``on_master``: the engine dumps the switch's flows again and then
  sends only the difference (nothing when the previous master left it converged);
- a lease that lapsed (a renewal answered late by a controller starved of CPU, or failing
  while the database was locked or gone) stops every write at once, by the clock, but is no
  step-down by itself: a switch whose MASTER role we held is *suspended* (``held_gen``). At
  the next renewal the database decides: if it still assigns us that switch with the same
  generation id, nobody was granted it meanwhile (every grant to another member bumps the
  generation, under the cluster-wide lock), so we ask the switch for MASTER with that
  generation again and, once it answers MASTER, write again *without* reading its flows
  (``on_resumed``): nobody else could have written them. If the switch went to another
  member, or our member row was gone (``rejoined``), we step down as before ("lease lapsed
  (found at renewal)"), and a STALE or IS_SLAVE answer to the new request steps down too.
  A MASTER answer that arrives after the lease lapsed again is held the same way (the switch
  made us MASTER; nothing is written until a renewal decides); ``Engine.resumed`` reads a
  switch's flows if it never read them as master on that connection.

Called from os-ken's event thread (connections, replies, errors) and from the membership
thread (assignments); callbacks run outside the lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

ROLE_NOCHANGE, ROLE_EQUAL, ROLE_MASTER, ROLE_SLAVE = 0, 1, 2, 3
ROLE_NAMES = {ROLE_NOCHANGE: "nochange", ROLE_EQUAL: "equal", ROLE_MASTER: "master",
              ROLE_SLAVE: "slave"}  # fmt: skip
ERR_BAD_REQUEST, ERR_IS_SLAVE = 1, 10  # OFPET_BAD_REQUEST / OFPBRC_IS_SLAVE
ERR_ROLE_REQUEST_FAILED = 11  # OFPET_ROLE_REQUEST_FAILED (code 0 STALE, 1 UNSUP, 2 BAD_ROLE)
_REASSIGNED = "no longer its master (reassigned)"


class RoleConn(Protocol):
    """A switch connection that can carry a role request."""

    dpid: int

    def request_role(self, role: int, generation: int) -> bool:
        """Send OFPT_ROLE_REQUEST; False if the connection is closing."""


@dataclass
class _State:
    conn: RoleConn
    requested: tuple[int, int] | None = None  # (role, generation) last asked for
    master_gen: int | None = None  # generation the switch confirmed us MASTER with
    held_gen: int | None = None  # MASTER with this generation when the lease lapsed (suspended)


SwitchCallback = Callable[[int, RoleConn], None]


def _holds(st: _State) -> bool:
    """A MASTER role is held on this connection (writing, or suspended by a lapse)."""
    return st.master_gen is not None or st.held_gen is not None


class Roles:
    """Role state per switch connection plus this controller's lease and assignment."""

    def __init__(
        self,
        *,
        on_master: SwitchCallback | None = None,
        on_step_down: SwitchCallback | None = None,
        on_refused: Callable[[], None] | None = None,
        on_resumed: SwitchCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._on_master = on_master
        self._on_step_down = on_step_down
        self._on_refused = on_refused
        self._on_resumed = on_resumed
        self._lease_until = float("-inf")
        self._mine: dict[int, int] = {}
        self._gens: dict[int, int] = {}
        self._refused: dict[int, int] = {}  # dpid -> generation the switch told us is stale
        self._conns: dict[int, _State] = {}
        self.step_downs = 0
        self.resumed = 0  # MASTER roles kept across a lapsed lease (no step-down, no dump)

    # -- what the engine asks --------------------------------------------------------------
    def lease_valid(self) -> bool:
        """Our lease has not lapsed (by this process's monotonic clock)."""
        return self._clock() < self._lease_until

    def may_write(self, dpid: int, conn: object) -> bool:
        """May a batch go to switch ``dpid`` over ``conn`` now? (Lease, assignment, and the
        switch's own MASTER answer with the assigned generation on this connection.)"""
        with self._lock:
            st = self._conns.get(dpid)
            return (
                self._clock() < self._lease_until
                and st is not None
                and st.conn is conn
                and st.master_gen is not None
                and st.master_gen == self._mine.get(dpid)
            )

    def masters(self, dpid: int) -> bool:
        """The database assigns switch ``dpid`` to us (confirmed by the switch or not yet)."""
        with self._lock:
            return dpid in self._mine and self._clock() < self._lease_until

    def role_of(self, dpid: int) -> str:
        """ "master" (the switch confirmed it and we may write), "slave" (asked for SLAVE), or
        "equal" (nothing asked yet, or MASTER asked and not yet answered: the switch holds a
        new connection as EQUAL, and we write nothing before its answer)."""
        with self._lock:
            st = self._conns.get(dpid)
            if st is None or st.requested is None:
                return "equal"
        if self.may_write(dpid, st.conn):
            return "master"
        return "slave" if st.requested[0] == ROLE_SLAVE else "equal"

    # -- from the membership ---------------------------------------------------------------
    def assigned(
        self,
        mine: Mapping[int, int],
        generations: Mapping[int, int],
        until: float,
        rejoined: bool = False,
    ) -> None:
        """The database's answer: ``mine`` (dpid -> generation id) we master, every switch's
        ``generations``, and our lease valid until ``until`` (monotonic clock). ``rejoined``:
        our member row was gone and this renewal inserted it again (no grant carries over)."""
        sends: list[tuple[RoleConn, int, int]] = []
        downs: list[tuple[int, RoleConn, str]] = []
        kept = 0
        with self._lock:
            lapsed = self._clock() >= self._lease_until
            self._lease_until = until
            self._mine = dict(mine)
            self._gens = dict(generations)
            for dpid, st in self._conns.items():
                gen = self._mine.get(dpid)
                if lapsed:  # the lease ran out before this answer: the switches are asked again
                    if st.master_gen is not None:  # suspended: the database decides below
                        st.held_gen, st.master_gen = st.master_gen, None
                    st.requested = None
                if st.held_gen is not None:
                    if st.held_gen == gen and not rejoined and self._refused.get(dpid, -1) < gen:
                        kept += 1  # nobody was granted it meanwhile: MASTER again, no dump
                    else:
                        st.held_gen, st.requested = None, None
                        why = "lease lapsed (found at renewal)" if lapsed else _REASSIGNED
                        downs.append((dpid, st.conn, why))
                elif st.master_gen is not None and st.master_gen != gen:
                    st.master_gen = None  # reassigned: stop writing before asking for SLAVE
                    downs.append((dpid, st.conn, _REASSIGNED))
                want = self._wanted(dpid)
                if want is not None and want != st.requested:
                    st.requested = want
                    sends.append((st.conn, *want))
        if lapsed and kept:
            log.warning(
                "lease lapsed (found at renewal): %d switch(es) still ours with the same "
                "generation id, asking them for MASTER again (no step-down, no flow dump)",
                kept,
            )  # fmt: skip
        for dpid, conn, why in downs:
            self._step_down(dpid, conn, why)
        self._send(sends)

    def lapse(self) -> None:
        """Our lease is gone (renewal failed past it): nothing is written from now on (the
        clock says so); MASTER roles are suspended until the next renewal decides."""
        with self._lock:
            self._lease_until = float("-inf")
            for st in self._conns.values():
                if st.master_gen is not None:
                    st.held_gen, st.master_gen = st.master_gen, None
                st.requested = None

    def _wanted(self, dpid: int) -> tuple[int, int] | None:
        if self._clock() >= self._lease_until:
            return None
        gen = self._mine.get(dpid)
        if gen is not None and self._refused.get(dpid, -1) < gen:
            return (ROLE_MASTER, gen)
        current = self._gens.get(dpid)
        return (ROLE_SLAVE, current) if current is not None else None

    # -- from the switches (os-ken's event thread) -----------------------------------------
    def connected(self, conn: RoleConn) -> None:
        """A switch connection finished its handshake: ask for the role we should hold.

        A new connection starts EQUAL at the switch: a MASTER role held on the connection it
        replaces is gone, and that is a step-down like any other (logged, never silent)."""
        with self._lock:
            old = self._conns.get(conn.dpid)
            lost = old.conn if old is not None and _holds(old) else None
            st = _State(conn)
            self._conns[conn.dpid] = st
            want = self._wanted(conn.dpid)
            st.requested = want
        if lost is not None:
            self._step_down(conn.dpid, lost, "a new connection replaces the one it was MASTER on")
        if want is not None:
            self._send([(conn, *want)])

    def disconnected(self, dpid: int, conn: RoleConn) -> None:
        """That connection closed (a newer one of the same dpid is left alone). A MASTER role
        held on it ends with it (the switch may have dropped us while we were paused: a
        lapsed member's target is removed from br-int): a step-down, logged."""
        with self._lock:
            st = self._conns.get(dpid)
            if st is None or st.conn is not conn:
                return
            del self._conns[dpid]
            was = st.master_gen if st.master_gen is not None else st.held_gen
        if was is not None:
            self._step_down(dpid, conn, f"connection closed while MASTER (generation {was})")

    def reply(self, dpid: int, conn: RoleConn, role: int, generation: int) -> None:
        """The switch answered a role request."""
        with self._lock:
            st = self._conns.get(dpid)
            if st is None or st.conn is not conn:
                return
            answered = (
                role == ROLE_MASTER
                and st.requested == (ROLE_MASTER, generation)
                and self._mine.get(dpid) == generation
            )
            late = answered and self._clock() >= self._lease_until
            granted = answered and not late
            was = st.master_gen if st.master_gen is not None else st.held_gen
            resumed = granted and st.held_gen == generation
            if late:  # MASTER at the switch, but our lease lapsed meanwhile: suspended
                st.master_gen, st.held_gen, st.requested = None, generation, None
            else:
                st.master_gen = generation if granted else None
                st.held_gen = None
        if late:
            log.info("switch %016x: MASTER (generation %d) answered after our lease lapsed: "
                     "held, writing nothing until a renewal", dpid, generation)  # fmt: skip
        elif resumed:
            self.resumed += 1
            log.info("switch %016x: MASTER (generation %d) kept across a lapsed lease",
                     dpid, generation)  # fmt: skip
            if self._on_resumed is not None:
                self._on_resumed(dpid, conn)
        elif granted and was != generation:
            log.info("switch %016x: MASTER (generation %d)", dpid, generation)
            if self._on_master is not None:
                self._on_master(dpid, conn)
        elif not granted and was is not None:
            self._step_down(dpid, conn, f"switch answered role {ROLE_NAMES.get(role, role)}")

    def error(self, dpid: int, conn: RoleConn, etype: int, code: int) -> bool:
        """An error from the switch; True if it was about roles (and is handled here)."""
        if etype == ERR_ROLE_REQUEST_FAILED:
            reason = "STALE generation id" if code == 0 else f"role request failed (code {code})"
        elif etype == ERR_BAD_REQUEST and code == ERR_IS_SLAVE:
            reason = "write refused: IS_SLAVE"
        else:
            return False
        with self._lock:
            st = self._conns.get(dpid)
            if st is None or st.conn is not conn:
                return True
            asked_master = st.requested is not None and st.requested[0] == ROLE_MASTER
            was = st.master_gen if st.master_gen is not None else st.held_gen
            if asked_master and st.requested is not None:
                self._refused[dpid] = st.requested[1]  # never ask with that generation again
                st.requested = None
            st.master_gen, st.held_gen = None, None
        if was is not None or asked_master:
            self._step_down(dpid, conn, reason)
            if self._on_refused is not None:
                self._on_refused()  # a newer master exists: read the database again
        else:
            log.info("switch %016x: %s (we hold no MASTER role there)", dpid, reason)
        return True

    # -- helpers ---------------------------------------------------------------------------
    def _step_down(self, dpid: int, conn: RoleConn, why: str) -> None:
        self.step_downs += 1
        log.warning("switch %016x: stepping down (%s)", dpid, why)
        if self._on_step_down is not None:
            self._on_step_down(dpid, conn)

    @staticmethod
    def _send(sends: list[tuple[RoleConn, int, int]]) -> None:
        for conn, role, gen in sends:
            log.info("switch %016x: asking for role %s (generation %d)", conn.dpid,
                     ROLE_NAMES[role], gen)  # fmt: skip
            conn.request_role(role, gen)
