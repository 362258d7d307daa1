"""OpenFlow flows as frozen, hashable values; no os-ken import (see ``ofmsg`` for that).

Match fields and set-field targets use os-ken's OXM names (``in_port``, ``eth_type``,
``eth_src``, ``arp_tpa``, ``ipv4_dst``, ``metadata``, ``tunnel_id``, ``tun_ipv4_src``,
``tun_ipv4_dst``, ``reg0``..``reg7``, ``ip_proto``, ``tcp_dst``, ``udp_dst``, and the
Nicira connection-tracking fields ``ct_state``, ``ct_zone``, ``ct_mark``...). A value is an
int or a string ("10.0.0.1", "0a:58:0a:00:00:01"); a masked value is a ``(value, mask)``
pair of the same kinds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TypeVar

MatchValue = int | str | tuple[int, int] | tuple[str, str]

# Reserved port numbers (OpenFlow 1.3).
OFPP_IN_PORT = 0xFFFFFFF8
OFPP_CONTROLLER = 0xFFFFFFFD


@dataclass(frozen=True, slots=True)
class Output:
    """Send the packet out of ``port`` (an OpenFlow port number, or OFPP_IN_PORT)."""

    port: int


@dataclass(frozen=True, slots=True)
class SetField:
    """Set header field ``field`` (OXM name) to ``value``."""

    field: str
    value: int | str


@dataclass(frozen=True, slots=True)
class RegMove:
    """Nicira move: copy ``n_bits`` of ``src`` (from ``src_ofs``) to ``dst`` (at ``dst_ofs``)."""

    src: str
    dst: str
    n_bits: int
    src_ofs: int = 0
    dst_ofs: int = 0


@dataclass(frozen=True, slots=True)
class Nat:
    """NAT inside a :class:`Ct`: ``kind`` "src" or "dst" to ``ip`` (ports ``port_lo``..
    ``port_hi``, 0 for any) on commit; "" (plain ``nat``) translates an existing
    connection's packets as its binding says."""

    kind: str = ""
    ip: str = ""
    port_lo: int = 0
    port_hi: int = 0


@dataclass(frozen=True, slots=True)
class Ct:
    """Nicira ``ct``: send the packet through connection tracking in ``zone``.

    ``commit`` records the connection (with ``mark`` as its ``ct_mark`` when given); ``nat``
    translates it; ``table`` recirculates a copy to that table with ``ct_state``, ``ct_zone``
    and ``ct_mark`` set (the flow's other actions apply to the packet as it was). Without
    ``table`` the packet goes on through the flow's next actions, translated.
    """

    zone: int
    table: int | None = None
    commit: bool = False
    nat: Nat | None = None
    mark: int | None = None


@dataclass(frozen=True, slots=True)
class Conjunction:
    """Nicira ``conjunction(id, clause/n_clauses)``: this flow is clause ``clause`` (1-based,
    as ``ovs-ofctl`` writes it) of conjunctive match ``id`` of ``n_clauses`` (2..64).

    A packet that matches, at one priority of a table, a flow of every clause of ``id`` is
    looked up again in that table with ``conj_id`` = ``id``: the flow matching ``conj_id``
    acts. A flow with conjunction actions has no other actions and no instructions; one
    flow may carry several (one per conjunctive match it is a clause of). Costs flows as the
    sum of the clauses' alternatives, not their product.
    """

    id: int
    clause: int
    n_clauses: int


Action = Output | SetField | RegMove | Ct | Conjunction

# ct_state bits (Nicira).
CT_NEW = 0x01
CT_EST = 0x02
CT_REL = 0x04
CT_RPL = 0x08
CT_INV = 0x10
CT_TRK = 0x20


@dataclass(frozen=True, slots=True)
class Flow:
    """One flow entry: table, priority, match, apply-actions, then optional metadata write and goto.

    A flow with no actions and no goto drops what it matches. ``match`` is a sorted tuple of
    (field, value) pairs; build flows with :func:`flow` so it is always canonical.
    """

    table: int
    priority: int
    match: tuple[tuple[str, MatchValue], ...] = ()
    actions: tuple[Action, ...] = ()
    write_metadata: tuple[int, int] | None = None
    goto: int | None = None
    cookie: int = field(default=0, compare=False, hash=False)

    def key(self) -> tuple[int, int, tuple[tuple[str, MatchValue], ...]]:
        """What OpenFlow identifies a flow by: table, priority and match."""
        return (self.table, self.priority, self.match)

    def match_dict(self) -> dict[str, MatchValue]:
        """The match as a dict."""
        return dict(self.match)


def flow(
    table: int,
    priority: int,
    match: dict[str, MatchValue] | None = None,
    actions: tuple[Action, ...] | list[Action] = (),
    *,
    write_metadata: tuple[int, int] | None = None,
    goto: int | None = None,
) -> Flow:
    """Build a canonical :class:`Flow` whose cookie is a hash of its content; its parts
    (match pairs, actions, the metadata write) are shared with equal parts of other flows
    (``_shared``)."""
    m = tuple(sorted((match or {}).items()))
    acts = tuple(actions)
    cookie = content_cookie(Flow(table, priority, m, acts, write_metadata, goto))
    m = _shared(tuple(_shared(pair) for pair in m))
    acts = _shared(tuple(_shared(a) for a in acts))
    meta = _shared(write_metadata) if write_metadata is not None else None
    return Flow(table, priority, m, acts, meta, goto, cookie)


# Parts of flows, each kept once: ("eth_type", 2048), ("in_port", 10), ("metadata", vni),
# (vni, mask), (SetField("reg6", 1),) recur in every endpoint's flows on every host, and
# an endpoint's own pairs (its MAC, its address) in several of its flows. At 1,000 hosts x
# 50 endpoints the 200,000 distinct flows took 525 bytes each, a third of it in such
# copies (``bench.memory``). Cleared when full: a part made after that is shared anew.
_SHARED: dict[object, object] = {}
_T = TypeVar("_T")
MAX_SHARED = 1 << 16


def _shared(part: _T) -> _T:
    """The one object equal to ``part`` (hashable, immutable) that flows built now share."""
    found = _SHARED.get(part)
    if found is None:
        if len(_SHARED) >= MAX_SHARED:
            _SHARED.clear()
        _SHARED[part] = found = part
    return found  # type: ignore[return-value]


def content_cookie(f: Flow) -> int:
    """A 64-bit cookie derived from the flow's content (table, priority, match, instructions).

    Equal flows get equal cookies on every controller and after every restart, so the
    installed set of a switch is known exactly from a flow dump of cookies alone. The top
    byte is fixed (0x76, 'v') to mark vxplane's flows; the cookie is never 0.
    """
    text = repr((f.table, f.priority, f.match, f.actions, f.write_metadata, f.goto))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return (0x76 << 56) | (int.from_bytes(digest, "big") & ((1 << 56) - 1)) or 1
