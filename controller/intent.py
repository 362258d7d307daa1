"""PURE: the intent kept in memory, updated by change records, and which hosts a change touches.

The engine reads the whole intent once (at start, and as a periodic audit) and then only the
rows named by the change log (``controller.db.changelog``): each record says which row
changed (``kind``, ``key``) and carries the row's value as read after the change (``None``:
the row is gone, or, for an endpoint, bound to no host). :func:`apply_changes` sets those
values in the model and returns the hosts whose desired flows may differ, so the engine
recomputes ``pipeline.desired_flows`` for those hosts only.

Kinds and keys:

  network   network name           -> Network | None
  host      host name              -> Host | None
  blocks    network name           -> tuple[Block, ...] (every block of that network)
  endpoint  "network/endpoint"     -> Endpoint | None (only bound endpoints are kept)

Every changed row is logged by its writer (deleting a host logs its released endpoints and
the blocks of its networks), so applying needs no cascade: the model holds exactly the final
values of what the log named. Which hosts a change touches follows ``pipeline``:

- a network, a host or a block changes flows on every host (every host has every network's
  VNI and ARP flows, a tunnel-in flow per peer and a route per block not its own), and may
  turn endpoints into or out of exceptions: the index is rebuilt, every host is touched;
- an endpoint touches the host it is bound to (its local flows), and when it lives away from
  its block's host (an exception: a /32 route on every other host) or its network has
  policies (a peer selector names its address on other hosts) every host, before or after
  the change.

``Intent.index`` is then what ``pipeline.desired_flows`` needs, kept up to date in O(1) per
endpoint change instead of O(endpoints) per pass.

:func:`apply_deltas` says more for the common change, an endpoint bound, moved or unbound in
its own host's block, in a network without policies, not through its host's gateway: the
flows it takes from and gives to its host (``pipeline.endpoint_flows``), so the engine patches
that host's desired set in O(the endpoint's flows) instead of recomputing it in O(hosts +
blocks + local endpoints), about 2,000 flows per host at 1,000 hosts. Anything else names
hosts to recompute in full, as ``apply_changes`` does.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from operator import attrgetter

from controller.flows import Flow
from controller.model import Block, Endpoint, EndpointState, Host, Network, Snapshot
from controller.pipeline import SnapshotIndex, endpoint_flows, owner_of

NETWORK = "network"
HOST = "host"
BLOCKS = "blocks"
ENDPOINT = "endpoint"
KINDS = (NETWORK, HOST, BLOCKS, ENDPOINT)

EpKey = tuple[str, str]  # (network, endpoint name)
Value = Network | Host | tuple[Block, ...] | Endpoint | None


@dataclass(frozen=True, slots=True)
class Change:
    """One row named by the change log and its value now (see the module docstring)."""

    kind: str
    key: str
    value: Value = None


def endpoint_key(network: str, name: str) -> str:
    """The change-log key of an endpoint (network names hold no '/')."""
    return f"{network}/{name}"


def split_endpoint_key(key: str) -> EpKey:
    """``endpoint_key`` backwards."""
    network, _, name = key.partition("/")
    return network, name


class _Local(Mapping[str, Iterable[tuple[Network, Endpoint]]]):
    """host -> its local (network, endpoint) pairs, as ``SnapshotIndex.local`` reads them."""

    def __init__(self, by_host: dict[str, dict[EpKey, tuple[Network, Endpoint]]]) -> None:
        self._by_host = by_host

    def __getitem__(self, host: str) -> Iterable[tuple[Network, Endpoint]]:
        return self._by_host[host].values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_host)

    def __len__(self) -> int:
        return len(self._by_host)


class Intent:
    """Networks, hosts, blocks and bound endpoints, with the index the pipeline needs.

    Quacks like ``model.Snapshot`` for ``pipeline.desired_flows`` (``hosts``, ``networks``,
    ``blocks``); :meth:`snapshot` makes a real one (the audit compares two of them).
    """

    def __init__(self, revision: int = 0) -> None:
        self.revision = revision
        self.networks: dict[str, Network] = {}
        self.hosts: dict[str, Host] = {}
        self._blocks: dict[str, tuple[Block, ...]] = {}
        self.endpoints: dict[EpKey, Endpoint] = {}
        self._local: dict[str, dict[EpKey, tuple[Network, Endpoint]]] = {}
        self._exceptions: dict[EpKey, tuple[Network, Endpoint]] = {}
        self._owners: dict[tuple[str, int], str] = {}
        self._by_dpid: dict[int, str] = {}
        self.index = SnapshotIndex(_Local(self._local), self._exceptions.values())

    # -- reading ---------------------------------------------------------------------------
    @property
    def blocks(self) -> Iterator[Block]:
        """Every block (any order: the pipeline makes a set)."""
        for blocks in self._blocks.values():
            yield from blocks

    @property
    def dpids(self) -> Mapping[int, str]:
        """Datapath id -> host name. A new mapping whenever the hosts change (never changed in
        place), so a reader can tell a change by identity, in O(1)."""
        return self._by_dpid

    def host_by_dpid(self, dpid: int) -> Host | None:
        """The host whose bridge has this datapath id, if any."""
        name = self._by_dpid.get(dpid)
        return self.hosts.get(name) if name is not None else None

    def is_exception(self, key: EpKey) -> bool:
        """True if the endpoint lives away from its block's host (routed by every host)."""
        return key in self._exceptions

    def snapshot(self, hosts: Collection[str] | None = None) -> Snapshot:
        """The model as a ``Snapshot`` (endpoints in key order; states as loaded); with
        ``hosts``, only the endpoints bound to those hosts (an audit page's slice)."""
        blocks = tuple(sorted(self.blocks, key=lambda b: (b.network, int(b.cidr.network_address))))
        if hosts is None:
            keys = sorted(self.endpoints)
        else:
            keys = sorted(k for k, e in self.endpoints.items() if e.host in hosts)
        endpoints = tuple(self.endpoints[k] for k in keys)
        return Snapshot(self.revision, dict(self.networks), dict(self.hosts), blocks, endpoints)

    # -- building --------------------------------------------------------------------------
    @classmethod
    def from_snapshot(cls, snap: Snapshot) -> Intent:
        """The model of a full read (unbound endpoints are left out: they have no flows)."""
        intent = cls(snap.revision)
        intent.networks = dict(snap.networks)
        intent.hosts = dict(snap.hosts)
        by_net: dict[str, list[Block]] = {}
        for block in snap.blocks:
            by_net.setdefault(block.network, []).append(block)
        intent._blocks = {net: tuple(blocks) for net, blocks in by_net.items()}
        intent.endpoints = {(e.network, e.name): e for e in snap.endpoints if e.host is not None}
        intent._reindex()
        return intent

    def _reindex(self) -> None:
        """Rebuild owners, dpids, local and exceptions from scratch (O(endpoints))."""
        self._owners = {(b.network, int(b.cidr.network_address)): b.host for b in self.blocks}
        self._by_dpid = {h.dpid: h.name for h in self.hosts.values() if h.dpid is not None}
        self._local.clear()
        self._exceptions.clear()
        for key, ep in self.endpoints.items():
            self._index_endpoint(key, ep)

    def _index_endpoint(self, key: EpKey, ep: Endpoint) -> None:
        """Add one bound endpoint to local and exceptions (the rule of ``pipeline.index``)."""
        net = self.networks.get(ep.network)
        if net is None or ep.host is None:
            return
        if ep.ofport is not None:
            self._local.setdefault(ep.host, {})[key] = (net, ep)
        if owner_of(self._owners, net, ep.ip) != ep.host:
            self._exceptions[key] = (net, ep)

    def _unindex_endpoint(self, key: EpKey, ep: Endpoint) -> None:
        if ep.host is not None:
            local = self._local.get(ep.host)
            if local is not None:
                local.pop(key, None)
                if not local:
                    del self._local[ep.host]
        self._exceptions.pop(key, None)

    def endpoint_hosts(self, key: EpKey) -> set[str] | None:
        """Hosts whose flows the endpoint ``key`` contributes to now; None: every host."""
        return self._endpoint_hosts(key, self.endpoints.get(key))

    def _endpoint_hosts(self, key: EpKey, ep: Endpoint | None) -> set[str] | None:
        """Hosts whose flows ``ep`` (as indexed now) contributes to; None: every host."""
        if ep is None or ep.host is None:
            return set()
        if key in self._exceptions:
            return None
        net = self.networks.get(key[0])
        if net is not None and net.policies:  # peers by label: other hosts name its address
            return None
        return {ep.host}


def apply_changes(intent: Intent, changes: Iterable[Change], revision: int) -> frozenset[str]:
    """Set every change's value in ``intent`` (now at ``revision``) and return the hosts
    whose desired flows may have changed: known before or after, so a host that went is
    named too (the caller skips names it has no switch for)."""
    return _apply(intent, changes, revision)[0]


@dataclass
class Deltas:
    """What a batch of changes did to the hosts' desired flows: ``full``, hosts to recompute
    (``pipeline.desired_flows``); ``patch``, host -> (flows gone, flows new) to apply to the
    host's flows as computed before the batch (every host in ``patch`` had flows then)."""

    full: frozenset[str]
    patch: dict[str, tuple[frozenset[Flow], frozenset[Flow]]] = field(default_factory=dict)

    @property
    def hosts(self) -> frozenset[str]:
        """Every host whose desired flows may have changed (``apply_changes``' answer)."""
        return self.full | self.patch.keys()


def apply_deltas(
    intent: Intent, changes: Iterable[Change], revision: int, known: Container[str] = ()
) -> Deltas:
    """``apply_changes``, telling which hosts can be patched (see the module docstring):
    only hosts in ``known`` (those whose flows before the batch the caller holds)."""
    touched, moved, local = _apply(intent, changes, revision)
    if moved is None:
        return Deltas(touched)
    full: set[str] = {h for h in touched if h not in known or h not in intent.hosts}
    gone: dict[str, set[Flow]] = {}
    new: dict[str, set[Flow]] = {}
    for key, (old, ep) in moved.items():
        for value, into in ((old, gone), (ep, new)):
            if value is None or value.host is None:
                continue
            host = intent.hosts.get(value.host)
            net = intent.networks.get(key[0])
            if host is None or net is None or value.host in full:
                continue
            if _gateway(host, net):
                full.add(value.host)
                continue
            into.setdefault(value.host, set()).update(endpoint_flows(host, net, value))
    patch: dict[str, tuple[frozenset[Flow], frozenset[Flow]]] = {}
    for name in touched - full:
        out = gone.get(name, set())
        add = new.get(name, set())
        if out:  # a flow another endpoint of the host still has stays
            out -= add
            host = intent.hosts[name]
            for net, ep in local.get(name, ()):
                if out and (net.name, ep.name) not in moved:
                    out.difference_update(endpoint_flows(host, net, ep))
        patch[name] = (frozenset(out - add), frozenset(add - out))
    return Deltas(frozenset(full), patch)


def _gateway(host: Host, net: Network) -> bool:
    """``net``'s endpoints on ``host`` shape its gateway's flows (``pipeline.gateway_flows``)."""
    return (
        host.egress_ip is not None
        and host.gateway_port is not None
        and net.external
        and bool(net.zone)
    )


def _apply(
    intent: Intent, changes: Iterable[Change], revision: int
) -> tuple[
    frozenset[str],
    dict[EpKey, tuple[Endpoint | None, Endpoint | None]] | None,
    dict[str, list[tuple[Network, Endpoint]]],
]:
    """``apply_changes``; also, when the batch changed only endpoints each touching its own
    host, every endpoint changed (as indexed before the batch, and now), else None, and the
    local endpoints, after the batch, of the hosts touched."""
    before_hosts = set(intent.hosts)
    structural = False
    touched: set[str] = set()
    everyone = False
    moved: dict[EpKey, Endpoint | None] = {}
    first: dict[EpKey, Endpoint | None] = {}
    for change in changes:
        if change.kind == NETWORK:
            structural = True
            _set(intent.networks, change.key, change.value, Network)
        elif change.kind == HOST:
            structural = True
            _set(intent.hosts, change.key, change.value, Host)
        elif change.kind == BLOCKS:
            structural = True
            blocks = change.value
            if blocks:
                assert isinstance(blocks, tuple)
                intent._blocks[change.key] = blocks
            else:
                intent._blocks.pop(change.key, None)
        elif change.kind == ENDPOINT:
            key = split_endpoint_key(change.key)
            ep = change.value
            assert ep is None or isinstance(ep, Endpoint)
            if ep is not None and ep.host is None:
                ep = None
            old = intent.endpoints.get(key)
            if key not in moved:  # first change of this endpoint in the batch: as indexed
                first[key] = old
                hosts = intent._endpoint_hosts(key, old)
                if hosts is None:
                    everyone = True
                else:
                    touched |= hosts
            if old is not None:
                intent._unindex_endpoint(key, old)
            if ep is None:
                intent.endpoints.pop(key, None)
            else:
                intent.endpoints[key] = ep
                if not structural:
                    intent._index_endpoint(key, ep)
            moved[key] = ep
        else:
            raise ValueError(f"unknown change kind {change.kind!r}")
    intent.revision = max(intent.revision, revision)
    if structural:
        intent._reindex()
        return frozenset(before_hosts | set(intent.hosts)), None, {}
    for key, ep in moved.items():
        hosts = intent._endpoint_hosts(key, ep)
        if hosts is None:
            everyone = True
        else:
            touched |= hosts
    if everyone:
        return frozenset(before_hosts | set(intent.hosts) | touched), None, {}
    local = {h: list(intent._local[h].values()) for h in touched if h in intent._local}
    return frozenset(touched), {k: (first[k], ep) for k, ep in moved.items()}, local


def _set(table: dict, key: str, value: Value, kind: type) -> None:  # type: ignore[type-arg]
    if value is None:
        table.pop(key, None)
    else:
        assert isinstance(value, kind)
        table[key] = value


def flow_view(snap: Snapshot, endpoints: bool = True) -> tuple[object, ...]:
    """What of a snapshot the flows depend on, comparable between a full read and the model:
    bound endpoints without their readiness state, blocks and hosts in a fixed order
    (``endpoints`` False: networks, hosts and blocks only)."""
    blocks = sorted(snap.blocks, key=lambda b: (b.network, int(b.cidr.network_address)))
    hosts = sorted((replace(h, last_seen=None) for h in snap.hosts.values()), key=lambda h: h.name)
    networks = sorted(snap.networks.values(), key=lambda n: n.name)
    if not endpoints:
        return tuple(networks), tuple(hosts), tuple(blocks)
    bound = sorted(
        (replace(e, state=EndpointState.PENDING, bound_rev=0) for e in snap.endpoints if e.host),
        key=lambda e: (e.network, e.name),
    )
    return tuple(networks), tuple(hosts), tuple(blocks), tuple(bound)


# What of a bound endpoint the flows depend on: its compared fields but its readiness.
_ENDPOINT_FLOW_KEY = attrgetter(
    *(f.name for f in fields(Endpoint) if f.compare and f.name not in ("state", "bound_rev"))
)


def _flow_endpoints(snap: Snapshot) -> dict[object, Endpoint]:
    """The bound endpoints of ``snap`` by what of them the flows depend on."""
    return {_ENDPOINT_FLOW_KEY(e): e for e in snap.endpoints if e.host}


def diff_views(full: Snapshot, model: Snapshot) -> list[str]:
    """What differs between a full read and the model (empty: the audit found nothing): what
    ``flow_view`` keeps, the endpoints compared by their fields (a new endpoint object each
    with ``replace``, 100,000 of them at 50,000 endpoints, was most of an audit's compare:
    0.7 s of CPU; the engine holds the GIL meanwhile)."""
    out: list[str] = []
    names = ("networks", "hosts", "blocks")
    for name, a, b in zip(names, flow_view(full, False), flow_view(model, False), strict=True):
        sa, sb = set(a), set(b)  # type: ignore[call-overload]
        if sa != sb:
            missing = sorted(map(str, sa - sb))[:3]
            extra = sorted(map(str, sb - sa))[:3]
            out.append(f"{name}: {len(sa - sb)} missing {missing}, {len(sb - sa)} extra {extra}")
    ea, eb = _flow_endpoints(full), _flow_endpoints(model)
    if ea.keys() != eb.keys():

        def shown(found: dict[object, Endpoint], keys: Iterable[object]) -> list[str]:
            return sorted(str(replace(found[k], state=EndpointState.PENDING, bound_rev=0))
                          for k in keys)[:3]  # fmt: skip

        gone, more = ea.keys() - eb.keys(), eb.keys() - ea.keys()
        out.append(
            f"endpoints: {len(gone)} missing {shown(ea, gone)}, {len(more)} extra {shown(eb, more)}"
        )
    return out


__all__ = [
    "BLOCKS",
    "ENDPOINT",
    "HOST",
    "KINDS",
    "NETWORK",
    "Change",
    "Intent",
    "Value",
    "Deltas",
    "apply_changes",
    "apply_deltas",
    "diff_views",
    "endpoint_key",
    "flow_view",
    "split_endpoint_key",
]
