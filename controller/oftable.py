"""A small in-memory OpenFlow 1.3 table interpreter for ``controller.flows.Flow`` values.

Tests drive the pure pipeline and reconciler through it and assert behaviour ("this packet
from port 3 leaves on the tunnel with tun_id 42 to 198.18.0.2"), never flow text; and
``vxplane trace`` (``controller.trace``) follows a packet through it: the controller's own
model of what its switches do.

What it models, as Open vSwitch does it:

- A :class:`Switch` holds flows keyed by (table, priority, match): an add with the same key
  replaces the old entry (cookie included); a delete by cookie removes every flow carrying it.
- Flows are validated on install like OVS would: known fields only, match prerequisites
  (``arp_*`` needs ``eth_type=0x0806``, ``ipv4_*`` needs ``eth_type=0x0800``; the same for
  fields that actions set or move), register moves within field widths, goto only forward.
- ``process`` runs the pipeline from table 0: the highest-priority matching flow wins (two
  matching flows of equal priority are an ambiguity, a bug, and raise), apply-actions run in
  order on a copy of the packet, then write-metadata, then goto. No match or no goto ends
  the pipeline. Output to the packet's own in_port is dropped (OpenFlow requires
  ``OFPP_IN_PORT`` for that), as OVS does.
- ONF bundles as OVS 3.1 runs them: :meth:`Switch.open_bundle`, :meth:`Switch.bundle_add`
  (a flow that fails validation is refused there and then, and left out: the commit still
  applies the rest, OVS's non-atomic case), :meth:`Switch.commit` (every operation or none:
  a table over ``capacity`` fails the whole commit, as OVS's ``overflow_policy=refuse``
  does) and :meth:`Switch.discard`. Outside a bundle an add over ``capacity`` is refused alone.
- ``ct`` (:class:`Conntrack`, one per switch) as the userspace datapath does it: a lookup
  in the action's zone sets ``ct_state`` (+trk with +new, or +est after a reply was seen,
  +rpl for replies), ``ct_zone`` and ``ct_mark``; ``commit`` records the connection with
  its NAT binding (a source port from the range, the packet's own if free, checked for
  clashes within the zone only, as OVS does); ``nat`` rewrites a tracked connection's
  packets both ways; ``table`` recirculates to that table (it must be the flow's last
  action). Without ``table`` the translated packet is what later outputs send, but later
  table lookups (goto) still see the addresses and ports from before the translation, as
  in OVS: only a recirculation makes NAT visible to matches. ICMP ids are not modelled
  (ports 0).
- IPv6 as far as the pipeline uses it: addresses, ICMPv6 type and code, and neighbour
  discovery's target, link-layer options, reserved field (flags) and option type, with
  OVS's prerequisites (a write to the target link-layer address needs a match on an
  advertisement, type 136: a flow matching a solicitation cannot set it). IPv6 is tracked
  and translated as IPv4 is (a connection's tuple carries its family; ``nat`` to an IPv6
  address needs a match on eth_type=0x86dd); other ethertypes are marked invalid by
  ``ct``. The hop limit is not modelled.
- A :class:`Fabric` joins switches by their flow-based VXLAN port, so a packet can be
  followed from one host to another.

Packets are dicts of OXM field name -> value (MACs and IPv4 addresses as strings, the rest
as ints); metadata, tunnel fields and registers default to 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from controller.flows import (
    CT_EST,
    CT_INV,
    CT_NEW,
    CT_RPL,
    CT_TRK,
    OFPP_IN_PORT,
    Conjunction,
    Ct,
    Flow,
    MatchValue,
    Output,
    RegMove,
    SetField,
)
from controller.reconcile import Changes

Packet = dict[str, int | str]

ETH_IP = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"

MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha", "ipv6_nd_sll", "ipv6_nd_tll"})
IP_FIELDS = frozenset(
    {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src", "tun_ipv4_dst"}
)
IP6_FIELDS = frozenset({"ipv6_src", "ipv6_dst", "ipv6_nd_target"})
# Neighbour discovery (OVS's prerequisite "ND": icmpv6_type 135 or 136 with code 0; the
# source link-layer option only in a solicitation, the target one only in an advertisement).
ND_FIELDS = frozenset({"ipv6_nd_target", "nd_reserved", "nd_options_type"})
ND_SOLICIT, ND_ADVERT = 135, 136
REGS = tuple(f"reg{i}" for i in range(8))
L4_FIELDS = ("tcp_src", "tcp_dst", "udp_src", "udp_dst")
CT_FIELDS = ("ct_state", "ct_zone", "ct_mark")
IP_TCP, IP_UDP, IP_ICMP, IP_ICMPV6 = 6, 17, 1, 58
WIDTH: dict[str, int] = {
    "in_port": 32,
    "eth_type": 16,
    "arp_op": 16,
    "metadata": 64,
    "tunnel_id": 64,
    "ip_proto": 8,
    "icmpv4_type": 8,
    "icmpv4_code": 8,
    "icmpv6_type": 8,
    "icmpv6_code": 8,
    "nd_reserved": 32,
    "nd_options_type": 8,
    **{f: 16 for f in L4_FIELDS},
    "ct_state": 32,
    "ct_zone": 16,
    "ct_mark": 32,
    "conj_id": 32,
    **{f: 48 for f in MAC_FIELDS},
    **{f: 32 for f in IP_FIELDS},
    **{f: 128 for f in IP6_FIELDS},
    **{r: 32 for r in REGS},
}
# Fields the switch zeroes at ingress unless the packet says otherwise.
DEFAULT_ZERO = (
    "metadata", "tunnel_id", "tun_ipv4_src", "tun_ipv4_dst", *REGS, *CT_FIELDS, "conj_id",
)  # fmt: skip
# Fields OpenFlow 1.3 does not allow a mask on.
UNMASKABLE = frozenset({"in_port", "eth_type", "arp_op", "ip_proto", "ct_zone"})
# Fields a tunnel carries across hosts (the inner frame).
INNER_FIELDS: tuple[str, ...] = (
    "eth_src",
    "eth_dst",
    "eth_type",
    "arp_op",
    "arp_spa",
    "arp_tpa",
    "arp_sha",
    "arp_tha",
    "ipv4_src",
    "ipv4_dst",
    "ip_proto",
    "icmpv4_type",
    *L4_FIELDS,
    "ipv6_src",
    "ipv6_dst",
    "icmpv6_type",
    "icmpv6_code",
    "ipv6_nd_target",
    "ipv6_nd_sll",
    "ipv6_nd_tll",
    "nd_reserved",
    "nd_options_type",
)
MAX_RECIRCULATIONS = 16
NAT_FIELDS = ("ipv4_src", "ipv4_dst", "ipv6_src", "ipv6_dst", *L4_FIELDS)
VXLAN_VNI_BITS = 24
MAX_TABLE = 254


class FlowRejected(ValueError):
    """The switch would refuse this flow (bad field, missing prerequisite, bad move...)."""


class CommitFailed(FlowRejected):
    """A bundle's operation number ``index`` failed at commit: nothing was applied."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index


class BundleError(ValueError):
    """A bundle control request the switch refuses (no such bundle, already open...)."""


class Ambiguity(AssertionError):
    """Two flows of the same priority in one table match the same packet."""


def prerequisite(name: str) -> tuple[int, ...] | None:
    """The eth_types one of which a match on (or a write to) this field requires, if any."""
    if name.startswith("arp_"):
        return (ETH_ARP,)
    if name.startswith(("ipv4_", "icmpv4_")):
        return (ETH_IP,)
    if name.startswith(("ipv6_", "icmpv6_", "nd_")):
        return (ETH_IPV6,)
    if name.startswith(("ip_proto", "tcp_", "udp_")):
        return (ETH_IP, ETH_IPV6)
    return None


def proto_prerequisite(name: str) -> int | None:
    """The ip_proto a match on (or a write to) this field requires, if any."""
    if name.startswith("tcp_"):
        return IP_TCP
    if name.startswith("udp_"):
        return IP_UDP
    if name.startswith("icmpv4_"):
        return IP_ICMP
    if name.startswith(("icmpv6_", "ipv6_nd_", "nd_")):
        return IP_ICMPV6
    return None


def nd_prerequisite(name: str) -> tuple[int, ...] | None:
    """The icmpv6_type one of which (with icmpv6_code 0) a match on (or a write to) this
    neighbour discovery field requires, if any (OVS: "lacks correct prerequisites")."""
    if name == "ipv6_nd_sll":
        return (ND_SOLICIT,)
    if name == "ipv6_nd_tll":
        return (ND_ADVERT,)
    if name in ND_FIELDS:
        return (ND_SOLICIT, ND_ADVERT)
    return None


def to_int(name: str, value: int | str) -> int:
    """A field value as an integer of the field's width."""
    if name not in WIDTH:
        raise FlowRejected(f"unknown field {name!r}")
    if isinstance(value, int):
        out = value
    elif name in MAC_FIELDS:
        out = int(value.replace(":", ""), 16)
    elif name in IP_FIELDS:
        out = int(IPv4Address(value))
    elif name in IP6_FIELDS:
        out = int(IPv6Address(value))
    else:
        raise FlowRejected(f"{name}: cannot use {value!r}")
    if not 0 <= out < (1 << WIDTH[name]):
        raise FlowRejected(f"{name}: {value!r} does not fit {WIDTH[name]} bits")
    return out


def from_int(name: str, value: int) -> int | str:
    """An integer field value in its readable form (MAC or dotted IPv4 where it applies)."""
    if name in MAC_FIELDS:
        return ":".join(f"{(value >> s) & 0xFF:02x}" for s in range(40, -8, -8))
    if name in IP_FIELDS:
        return str(IPv4Address(value))
    if name in IP6_FIELDS:
        return str(IPv6Address(value))
    return value


def _match_pair(name: str, value: MatchValue) -> tuple[int, int]:
    full = (1 << WIDTH[name]) - 1 if name in WIDTH else 0
    if isinstance(value, tuple):
        if name in UNMASKABLE:
            raise FlowRejected(f"{name} cannot be masked")
        v, m = to_int(name, value[0]), to_int(name, value[1])
        return v & m, m
    return to_int(name, value), full


def _fields_of(f: Flow) -> Iterable[tuple[str, str]]:
    """(role, field) of every field a flow reads or writes in its actions."""
    for a in f.actions:
        if isinstance(a, SetField):
            yield "set", a.field
        elif isinstance(a, Ct) and a.mark is not None:
            yield "set", "ct_mark"
        elif isinstance(a, RegMove):
            yield "move-src", a.src
            yield "move-dst", a.dst


def validate(f: Flow) -> None:
    """Raise :class:`FlowRejected` where Open vSwitch would refuse ``f``."""
    if not 0 <= f.table <= MAX_TABLE:
        raise FlowRejected(f"table {f.table} out of range")
    if not 0 <= f.priority <= 0xFFFF:
        raise FlowRejected(f"priority {f.priority} out of range")
    match = f.match_dict()
    if len(match) != len(f.match):
        raise FlowRejected("a field appears twice in the match")
    eth_type = match.get("eth_type")
    for name, value in f.match:
        _match_pair(name, value)
        _check_prerequisites(match, f"match on {name}", name)
    for role, name in _fields_of(f):
        if name not in WIDTH:
            raise FlowRejected(f"{role} of unknown field {name!r}")
        _check_prerequisites(match, f"{role} {name}", name)
    _validate_conjunctions(f)
    for i, a in enumerate(f.actions):
        if isinstance(a, Ct):
            _validate_ct(f, a, last=i == len(f.actions) - 1, eth_type=eth_type)
    for a in f.actions:
        if isinstance(a, SetField):
            to_int(a.field, a.value)
        elif isinstance(a, RegMove):
            if a.n_bits <= 0:
                raise FlowRejected(f"move of {a.n_bits} bits")
            for name, ofs in ((a.src, a.src_ofs), (a.dst, a.dst_ofs)):
                if ofs < 0 or ofs + a.n_bits > WIDTH[name]:
                    raise FlowRejected(f"move {ofs}+{a.n_bits} bits exceeds {name}")
        elif isinstance(a, Output):
            if not 0 < a.port <= 0xFFFFFFFF:
                raise FlowRejected(f"output to port {a.port}")
        elif isinstance(a, Ct | Conjunction):
            pass
        else:  # pragma: no cover - the Action union is closed
            raise FlowRejected(f"unknown action {a!r}")
    if f.write_metadata is not None:
        value, mask = f.write_metadata
        to_int("metadata", value)
        to_int("metadata", mask)
    if f.goto is not None and not f.table < f.goto <= MAX_TABLE:
        raise FlowRejected(f"goto {f.goto} from table {f.table}: OpenFlow only goes forward")


def _check_prerequisites(match: Mapping[str, MatchValue], what: str, name: str) -> None:
    eth_type = match.get("eth_type")
    need = prerequisite(name)
    if need is not None and eth_type not in need:
        want = " or ".join(f"{t:#06x}" for t in need)
        raise FlowRejected(f"{what} needs a match on eth_type={want}, has {eth_type!r}")
    proto = proto_prerequisite(name)
    if proto is not None and match.get("ip_proto") != proto:
        raise FlowRejected(f"{what} needs a match on ip_proto={proto}")
    types = nd_prerequisite(name)
    if types is not None and (
        match.get("icmpv6_type") not in types or match.get("icmpv6_code") != 0
    ):
        raise FlowRejected(
            f"{what} lacks correct prerequisites: needs icmpv6_type in {types} and "
            "icmpv6_code=0 in the match"
        )


def _validate_conjunctions(f: Flow) -> None:
    """What OVS refuses about ``conjunction``: other actions or instructions beside it, a
    clause outside 1..n, n outside 2..64, one id twice, and a match on ``conj_id`` too."""
    conj = [a for a in f.actions if isinstance(a, Conjunction)]
    if not conj:
        return
    if len(conj) != len(f.actions) or f.goto is not None or f.write_metadata is not None:
        raise FlowRejected("a flow with conjunction actions has no other actions")
    if "conj_id" in f.match_dict():
        raise FlowRejected("a clause flow of a conjunctive match cannot match conj_id")
    if len({a.id for a in conj}) != len(conj):
        raise FlowRejected("a flow is one clause of each conjunctive match at most")
    for a in conj:
        if not 2 <= a.n_clauses <= 64 or not 1 <= a.clause <= a.n_clauses:
            raise FlowRejected(f"conjunction({a.id},{a.clause}/{a.n_clauses}) is invalid")


def _validate_ct(f: Flow, a: Ct, *, last: bool, eth_type: MatchValue | None) -> None:
    """What OVS refuses in a ``ct`` action (and what this model does not do)."""
    if not 0 <= a.zone <= 0xFFFF:
        raise FlowRejected(f"ct zone {a.zone} is not 16 bits")
    if a.table is not None:
        if not 0 <= a.table <= MAX_TABLE:
            raise FlowRejected(f"ct table {a.table} out of range")
        if not last or f.goto is not None:
            raise FlowRejected("a recirculating ct must be the flow's last action, no goto")
    if a.nat is not None:
        if eth_type not in (ETH_IP, ETH_IPV6):
            raise FlowRejected("ct nat needs a match on eth_type=0x0800 or 0x86dd")
        if a.nat.kind not in ("", "src", "dst"):
            raise FlowRejected(f"ct nat kind {a.nat.kind!r}")
        if a.nat.kind and not a.commit:
            raise FlowRejected("ct nat(src|dst=...) needs commit")
        if a.nat.kind and eth_type == ETH_IP:
            IPv4Address(a.nat.ip)
        elif a.nat.kind:  # OVS takes it, and conntrack never translates across families
            IPv6Address(a.nat.ip)
        if not 0 <= a.nat.port_lo <= a.nat.port_hi <= 0xFFFF:
            raise FlowRejected(f"ct nat ports {a.nat.port_lo}-{a.nat.port_hi}")
    if a.mark is not None:
        if not a.commit:
            raise FlowRejected("ct_mark can only be set on commit")
        to_int("ct_mark", a.mark)


# source, destination, protocol, source port, destination port, ethertype (the family)
Tuple5 = tuple[int, int, int, int, int, int]


@dataclass
class Conn:
    """A connection conntrack knows: the tuple it started with and the one replies carry."""

    zone: int
    orig: Tuple5
    reply: Tuple5
    mark: int = 0
    seen_reply: bool = False


@dataclass
class Conntrack:
    """One switch's connection table (all zones)."""

    conns: list[Conn] = field(default_factory=list)

    def find(self, zone: int, t: Tuple5) -> tuple[Conn, bool] | None:
        """The connection of ``t`` in ``zone`` and whether ``t`` is its reply direction."""
        for c in self.conns:
            if c.zone == zone and c.orig == t:
                return c, False
            if c.zone == zone and c.reply == t:
                return c, True
        return None

    def taken(self, zone: int, reply: Tuple5) -> bool:
        """True if a connection of ``zone`` already expects replies as ``reply``."""
        return any(c.zone == zone and reply in (c.reply, c.orig) for c in self.conns)

    def in_zone(self, zone: int) -> list[Conn]:
        """The connections of ``zone``."""
        return [c for c in self.conns if c.zone == zone]


def _ports(pkt: Mapping[str, int]) -> tuple[str, str] | None:
    proto = pkt.get("ip_proto", 0)
    if proto == IP_TCP:
        return "tcp_src", "tcp_dst"
    if proto == IP_UDP:
        return "udp_src", "udp_dst"
    return None


def _addresses(eth_type: int) -> tuple[str, str]:
    return ("ipv6_src", "ipv6_dst") if eth_type == ETH_IPV6 else ("ipv4_src", "ipv4_dst")


def five_tuple(pkt: Mapping[str, int]) -> Tuple5:
    """(source, destination, protocol, source port, destination port, ethertype) of an
    IPv4 or IPv6 packet."""
    ports = _ports(pkt)
    sport, dport = (pkt.get(ports[0], 0), pkt.get(ports[1], 0)) if ports else (0, 0)
    src, dst = _addresses(pkt["eth_type"])
    return (pkt[src], pkt[dst], pkt.get("ip_proto", 0), sport, dport, pkt["eth_type"])


def _rewrite(pkt: dict[str, int], t: Tuple5) -> None:
    src, dst = _addresses(t[5])
    pkt[src], pkt[dst] = t[0], t[1]
    ports = _ports(pkt)
    if ports:
        pkt[ports[0]], pkt[ports[1]] = t[3], t[4]


def _inverse(t: Tuple5) -> Tuple5:
    return (t[1], t[0], t[2], t[4], t[3], t[5])


def _nat_ip(nat_ip: str, eth_type: int) -> int:
    return int(IPv6Address(nat_ip) if eth_type == ETH_IPV6 else IPv4Address(nat_ip))


def _commit(track: Conntrack, a: Ct, t: Tuple5) -> Conn:
    src, dst, proto, sport, dport, family = t
    nat = a.nat
    reply: Tuple5 = _inverse(t)
    if nat is not None and nat.kind == "src":
        ip = _nat_ip(nat.ip, family)
        if proto in (IP_TCP, IP_UDP) and nat.port_lo:
            lo, hi = nat.port_lo, nat.port_hi
            tries = ([sport] if lo <= sport <= hi else []) + list(range(lo, hi + 1))
            port = next(
                (p for p in tries if not track.taken(a.zone, (dst, ip, proto, dport, p, family))),
                None,
            )
            if port is None:
                raise AssertionError(f"zone {a.zone}: source ports {lo}-{hi} exhausted")
        else:
            port = sport
        reply = (dst, ip, proto, dport, port, family)
    elif nat is not None and nat.kind == "dst":
        ip = _nat_ip(nat.ip, family)
        reply = (ip, src, proto, nat.port_lo or dport, sport, family)
    conn = Conn(a.zone, t, reply, a.mark or 0)
    track.conns.append(conn)
    return conn


def _is_clause(f: Flow) -> bool:
    return any(isinstance(a, Conjunction) for a in f.actions)


def _complete(clauses: Iterable[Flow]) -> int | None:
    """The lowest conjunction id every one of whose clauses is among ``clauses``."""
    seen: dict[int, set[int]] = {}
    sizes: dict[int, int] = {}
    for f in clauses:
        for a in f.actions:
            assert isinstance(a, Conjunction)
            seen.setdefault(a.id, set()).add(a.clause)
            sizes[a.id] = a.n_clauses
    complete = [i for i, got in seen.items() if len(got) == sizes[i]]
    return min(complete) if complete else None


def _normalize(packet: Mapping[str, int | str]) -> dict[str, int]:
    pkt = {name: 0 for name in DEFAULT_ZERO}
    for name, value in packet.items():
        pkt[name] = to_int(name, value)
    return pkt


def _readable(pkt: Mapping[str, int]) -> Packet:
    return {name: from_int(name, value) for name, value in pkt.items()}


@dataclass(frozen=True)
class Emitted:
    """A packet sent out of ``port``, as it was when the Output action ran."""

    port: int
    packet: Packet


@dataclass
class Switch:
    """One bridge's flow tables."""

    name: str = "br-int"
    flows: dict[tuple[int, int, tuple[tuple[str, MatchValue], ...]], Flow] = field(
        default_factory=dict
    )
    trace: list[tuple[int, Flow | None]] = field(default_factory=list)
    suppressed: list[Emitted] = field(default_factory=list)
    capacity: int | None = None  # flows at most (OVS: Flow_Table flow_limit, refuse)
    bundles: dict[int, list[Operation]] = field(default_factory=dict)  # open bundles
    commits: int = 0
    conntrack: Conntrack = field(default_factory=Conntrack)

    # -- flow table ------------------------------------------------------------------------
    def add(self, f: Flow) -> None:
        """OFPFC_ADD: install ``f``, replacing any flow with the same table, priority, match."""
        validate(f)
        if self.capacity is not None and f.key() not in self.flows:
            if len(self.flows) >= self.capacity:
                raise FlowRejected(f"table full ({self.capacity} flows)")
        self.flows[f.key()] = f

    # -- bundles ---------------------------------------------------------------------------
    def open_bundle(self, bundle_id: int) -> None:
        """ONF_BCT_OPEN_REQUEST."""
        if bundle_id in self.bundles:
            raise BundleError(f"bundle {bundle_id} exists")
        self.bundles[bundle_id] = []

    def bundle_add(self, bundle_id: int, op: Operation) -> None:
        """ONF_ET_BUNDLE_ADD_MESSAGE: an add is validated now (FlowRejected: left out)."""
        if bundle_id not in self.bundles:
            raise BundleError(f"no bundle {bundle_id}")
        if op[0] == "add":
            assert isinstance(op[1], Flow)
            validate(op[1])
        self.bundles[bundle_id].append(op)

    def commit(self, bundle_id: int) -> None:
        """ONF_BCT_COMMIT_REQUEST: every operation in order, or (CommitFailed) none."""
        ops = self.bundles.pop(bundle_id, None)
        if ops is None:
            raise BundleError(f"no bundle {bundle_id}")
        before = dict(self.flows)
        for i, op in enumerate(ops):
            try:
                self.apply_one(op)
            except FlowRejected as exc:
                self.flows = before
                raise CommitFailed(i, str(exc)) from exc
        self.commits += 1

    def discard(self, bundle_id: int) -> None:
        """ONF_BCT_DISCARD_REQUEST."""
        if self.bundles.pop(bundle_id, None) is None:
            raise BundleError(f"no bundle {bundle_id}")

    def delete_cookie(self, cookie: int) -> None:
        """OFPFC_DELETE with an exact cookie mask, any table: remove every flow with it."""
        for key in [k for k, f in self.flows.items() if f.cookie == cookie]:
            del self.flows[key]

    def apply(self, changes: Changes) -> None:
        """Apply a reconcile batch in its order: adds, then deletes."""
        for op in operations(changes):
            self.apply_one(op)

    def apply_one(self, op: Operation) -> None:
        """Apply one operation of a batch (see :func:`operations`)."""
        kind, arg = op
        if kind == "add":
            assert isinstance(arg, Flow)
            self.add(arg)
        else:
            assert isinstance(arg, int)
            self.delete_cookie(arg)

    def load(self, flows: Iterable[Flow]) -> Switch:
        """Add every flow of ``flows``; returns self."""
        for f in flows:
            self.add(f)
        return self

    def table(self) -> frozenset[Flow]:
        """Every installed flow (cookies compare too, see :meth:`cookies`)."""
        return frozenset(self.flows.values())

    def cookies(self) -> frozenset[int]:
        """The cookies of every installed flow."""
        return frozenset(f.cookie for f in self.flows.values())

    def snapshot(self) -> frozenset[tuple[int, Flow]]:
        """The table content including cookies, for exact comparisons."""
        return frozenset((f.cookie, f) for f in self.flows.values())

    # -- packet processing -----------------------------------------------------------------
    def lookup(self, table: int, pkt: Mapping[str, int]) -> Flow | None:
        """The flow of ``table`` that wins for ``pkt``; raises :class:`Ambiguity` on a tie.

        Conjunctive matches as OVS runs them: at the highest priority with a matching flow,
        an ordinary flow wins alone (beside clause flows of that priority: ambiguous); clause
        flows complete a conjunction when every clause of one id matches, and then the table
        is looked up again with ``conj_id`` set (the lowest complete id: OVS picks any, so
        the pipeline must give them equal effects); an incomplete priority is skipped.
        """
        levels: dict[int, list[Flow]] = {}
        for f in self.flows.values():
            if f.table == table and _matches(f, pkt):
                levels.setdefault(f.priority, []).append(f)
        again = pkt.get("conj_id", 0) != 0  # the second lookup: clause flows do not count
        for priority in sorted(levels, reverse=True):
            plain = [f for f in levels[priority] if not _is_clause(f)]
            clauses = [] if again else [f for f in levels[priority] if _is_clause(f)]
            if len(plain) > 1 or (plain and clauses):
                raise Ambiguity(
                    f"{self.name}: table {table} priority {priority}: "
                    f"{len(levels[priority])} flows match {_readable(pkt)}: {levels[priority]}"
                )
            if plain:
                return plain[0]
            done = _complete(clauses)
            if done is not None:
                return self.lookup(table, {**pkt, "conj_id": done})
        return None

    def conj_flows(self) -> int:
        """How many flows carry conjunction actions or match ``conj_id`` (policy cost)."""
        return sum(1 for f in self.flows.values() if _is_clause(f) or "conj_id" in f.match_dict())

    def process(self, packet: Mapping[str, int | str], in_port: int) -> list[Emitted]:
        """Run ``packet`` arriving on ``in_port`` through the pipeline; what leaves, in order."""
        pkt = _normalize(packet)
        pkt["in_port"] = in_port
        out: list[Emitted] = []
        self.trace = []
        self.suppressed = []
        table: int | None = 0
        recirculations = 0
        stale: dict[str, int] = {}  # pre-NAT fields lookups still see until a recirculation
        while table is not None:
            f = self.lookup(table, {**pkt, **stale})
            self.trace.append((table, f))
            if f is None:
                break
            recirculate: int | None = None
            for action in f.actions:
                if isinstance(action, Ct):
                    before = {k: pkt[k] for k in NAT_FIELDS if k in pkt}
                    self._ct(action, pkt)
                    recirculate = action.table
                    if recirculate is None:
                        for k, v in before.items():
                            if pkt.get(k) != v:
                                stale.setdefault(k, v)
                else:
                    self._execute(action, pkt, in_port, out)
            if f.write_metadata is not None:
                value, mask = f.write_metadata
                pkt["metadata"] = (pkt["metadata"] & ~mask) | (value & mask)
            table = f.goto
            if recirculate is not None:
                recirculations += 1
                if recirculations > MAX_RECIRCULATIONS:
                    raise AssertionError(f"{self.name}: recirculation loop: {self.trace}")
                table = recirculate
                stale = {}
        return out

    def _ct(self, a: Ct, pkt: dict[str, int]) -> None:
        """Run ``pkt`` through conntrack as the ``ct`` action ``a`` says."""
        if pkt.get("eth_type") not in (ETH_IP, ETH_IPV6):
            pkt.update(ct_state=CT_TRK | CT_INV, ct_zone=a.zone, ct_mark=0)
            return
        t = five_tuple(pkt)
        found = self.conntrack.find(a.zone, t)
        if found is None and a.commit:
            found = (_commit(self.conntrack, a, t), False)
            state = CT_TRK | CT_NEW
        elif found is None:
            pkt.update(ct_state=CT_TRK | CT_NEW, ct_zone=a.zone, ct_mark=0)
            return
        else:
            conn, is_reply = found
            if is_reply:
                conn.seen_reply = True
                state = CT_TRK | CT_EST | CT_RPL
            else:
                state = CT_TRK | (CT_EST if conn.seen_reply else CT_NEW)
            if a.commit and a.mark is not None:
                conn.mark = a.mark
        conn, is_reply = found
        if a.nat is not None:
            _rewrite(pkt, _inverse(conn.orig if is_reply else conn.reply))
        pkt.update(ct_state=state, ct_zone=a.zone, ct_mark=conn.mark)

    def tables_visited(self) -> list[int]:
        """Tables the last processed packet went through."""
        return [t for t, _ in self.trace]

    def _execute(
        self, action: object, pkt: dict[str, int], in_port: int, out: list[Emitted]
    ) -> None:
        if isinstance(action, SetField):
            pkt[action.field] = to_int(action.field, action.value)
        elif isinstance(action, RegMove):
            mask = (1 << action.n_bits) - 1
            bits = (pkt.get(action.src, 0) >> action.src_ofs) & mask
            old = pkt.get(action.dst, 0) & ~(mask << action.dst_ofs)
            pkt[action.dst] = old | (bits << action.dst_ofs)
        elif isinstance(action, Output):
            if action.port == OFPP_IN_PORT:
                out.append(Emitted(in_port, _readable(pkt)))
            elif action.port == in_port:
                # OpenFlow: output to the ingress port only through OFPP_IN_PORT.
                self.suppressed.append(Emitted(in_port, _readable(pkt)))
            else:
                out.append(Emitted(action.port, _readable(pkt)))
        else:  # pragma: no cover
            raise FlowRejected(f"unknown action {action!r}")


def _matches(f: Flow, pkt: Mapping[str, int]) -> bool:
    for name, value in f.match:
        v, m = _match_pair(name, value)
        if pkt.get(name, 0) & m != v:
            return False
    return True


Operation = tuple[str, Flow | int]


def operations(changes: Changes) -> list[Operation]:
    """A batch as the ordered list of single operations a switch applies."""
    ops: list[Operation] = [("add", f) for f in changes.adds]
    ops.extend(("delete", c) for c in changes.deletes)
    return ops


# -- packets ---------------------------------------------------------------------------------


def ipv4_packet(eth_src: str, ipv4_src: str, ipv4_dst: str, eth_dst: str = ZERO_MAC) -> Packet:
    """An IPv4 frame."""
    return {
        "eth_src": eth_src,
        "eth_dst": eth_dst,
        "eth_type": ETH_IP,
        "ipv4_src": ipv4_src,
        "ipv4_dst": ipv4_dst,
    }


def tcp_packet(
    eth_src: str, ipv4_src: str, ipv4_dst: str, sport: int, dport: int, eth_dst: str = ZERO_MAC
) -> Packet:
    """A TCP segment in an IPv4 frame."""
    pkt = ipv4_packet(eth_src, ipv4_src, ipv4_dst, eth_dst)
    pkt.update(ip_proto=IP_TCP, tcp_src=sport, tcp_dst=dport)
    return pkt


def icmp_packet(eth_src: str, ipv4_src: str, ipv4_dst: str, eth_dst: str = ZERO_MAC) -> Packet:
    """An ICMP echo request in an IPv4 frame."""
    pkt = ipv4_packet(eth_src, ipv4_src, ipv4_dst, eth_dst)
    pkt.update(ip_proto=IP_ICMP, icmpv4_type=8)
    return pkt


def ipv6_packet(eth_src: str, ipv6_src: str, ipv6_dst: str, eth_dst: str = ZERO_MAC) -> Packet:
    """An IPv6 frame."""
    return {
        "eth_src": eth_src,
        "eth_dst": eth_dst,
        "eth_type": ETH_IPV6,
        "ipv6_src": ipv6_src,
        "ipv6_dst": ipv6_dst,
    }


def icmp6_packet(
    eth_src: str, ipv6_src: str, ipv6_dst: str, icmp_type: int, eth_dst: str = ZERO_MAC
) -> Packet:
    """An ICMPv6 message of ``icmp_type`` (code 0)."""
    pkt = ipv6_packet(eth_src, ipv6_src, ipv6_dst, eth_dst)
    pkt.update(ip_proto=IP_ICMPV6, icmpv6_type=icmp_type, icmpv6_code=0)
    return pkt


def tcp6_packet(
    eth_src: str, ipv6_src: str, ipv6_dst: str, sport: int, dport: int, eth_dst: str = ZERO_MAC
) -> Packet:
    """A TCP segment in an IPv6 frame."""
    pkt = ipv6_packet(eth_src, ipv6_src, ipv6_dst, eth_dst)
    pkt.update(ip_proto=IP_TCP, tcp_src=sport, tcp_dst=dport)
    return pkt


def nd_solicit(eth_src: str, ipv6_src: str, target: str, *, unicast: str | None = None) -> Packet:
    """A neighbour solicitation for ``target`` (to its solicited-node group, or to
    ``unicast`` as a reachability probe), with the source link-layer option unless the
    source is :: (duplicate address detection)."""
    low = int(IPv6Address(target)) & 0xFFFFFF
    group = IPv6Address(int(IPv6Address("ff02::1:ff00:0")) | low)
    group_mac = "33:33:" + ":".join(f"{b:02x}" for b in group.packed[12:])
    dst, mac = (unicast, ZERO_MAC) if unicast else (str(group), group_mac)
    pkt = icmp6_packet(eth_src, ipv6_src, dst, ND_SOLICIT, mac)
    pkt["ipv6_nd_target"] = target
    if ipv6_src != "::":
        pkt.update(ipv6_nd_sll=eth_src, nd_options_type=1)
    return pkt


def arp_packet(
    sha: str,
    spa: str,
    tpa: str,
    *,
    op: int = 1,
    tha: str = ZERO_MAC,
    eth_src: str | None = None,
    eth_dst: str = BROADCAST_MAC,
) -> Packet:
    """An ARP frame (a broadcast request unless told otherwise)."""
    return {
        "eth_src": eth_src if eth_src is not None else sha,
        "eth_dst": eth_dst,
        "eth_type": ETH_ARP,
        "arp_op": op,
        "arp_sha": sha,
        "arp_spa": spa,
        "arp_tha": tha,
        "arp_tpa": tpa,
    }


def arp_request(sha: str, spa: str, tpa: str) -> Packet:
    """A broadcast ARP request "who has ``tpa``? tell ``spa``"."""
    return arp_packet(sha, spa, tpa)


def tunnelled(inner: Mapping[str, int | str], tun_src: str, tun_dst: str, vni: int) -> Packet:
    """``inner`` as it arrives from a VXLAN tunnel (only the inner frame survives)."""
    pkt: Packet = {k: v for k, v in inner.items() if k in INNER_FIELDS}
    pkt.update({"tunnel_id": vni, "tun_ipv4_src": tun_src, "tun_ipv4_dst": tun_dst})
    return pkt


# -- several switches joined by VXLAN ----------------------------------------------------------


@dataclass
class Node:
    """A host of the fabric: its switch, underlay address and flow-based VXLAN port."""

    switch: Switch
    underlay_ip: str
    tunnel_port: int


@dataclass(frozen=True)
class Delivery:
    """A packet leaving a switch on a non-tunnel port (to a container)."""

    host: str
    port: int
    packet: Packet


@dataclass
class Fabric:
    """Hosts joined by an underlay; follows packets through tunnels to their final ports."""

    nodes: dict[str, Node]
    hops: list[tuple[str, str, int]] = field(default_factory=list)
    lost: list[tuple[str, Packet]] = field(default_factory=list)

    def send(
        self, host: str, packet: Mapping[str, int | str], in_port: int, *, max_hops: int = 4
    ) -> list[Delivery]:
        """Inject ``packet`` on ``host``'s ``in_port``; where it ends up, over all hosts."""
        self.hops = []
        self.lost = []
        return self._run(host, packet, in_port, max_hops)

    def _run(
        self, host: str, packet: Mapping[str, int | str], in_port: int, budget: int
    ) -> list[Delivery]:
        node = self.nodes[host]
        out: list[Delivery] = []
        for e in node.switch.process(packet, in_port):
            if e.port != node.tunnel_port:
                out.append(Delivery(host, e.port, e.packet))
                continue
            vni = int(e.packet["tunnel_id"])
            assert vni < (1 << VXLAN_VNI_BITS), f"{host}: tun_id {vni:#x} does not fit a VNI"
            peer = self._by_underlay(str(e.packet["tun_ipv4_dst"]))
            if peer is None or peer == host:
                self.lost.append((host, e.packet))
                continue
            if budget <= 0:
                raise AssertionError(f"forwarding loop: {self.hops}")
            self.hops.append((host, peer, vni))
            arriving = tunnelled(e.packet, node.underlay_ip, self.nodes[peer].underlay_ip, vni)
            out.extend(self._run(peer, arriving, self.nodes[peer].tunnel_port, budget - 1))
        return out

    def _by_underlay(self, ip: str) -> str | None:
        for name, node in self.nodes.items():
            if node.underlay_ip == ip:
                return name
        return None
