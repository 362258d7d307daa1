"""The in-memory intent updated by change records gives the same flows as a full recompute.

A seeded random walk creates and deletes networks and hosts, claims blocks, binds, moves,
unbinds and deletes endpoints (as the repository does, logging every row it changes), and
after every step, or every few steps as one batch read at the end (as an engine pass that
finds several revisions does), applies the changes to an ``Intent``, recomputes the desired
flows of only the hosts ``apply_changes`` names, and compares every host's flows with
``pipeline.desired_flows`` on a full snapshot of the same intent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import pytest

from controller.flows import Flow
from controller.intent import (
    BLOCKS,
    ENDPOINT,
    HOST,
    NETWORK,
    Change,
    Intent,
    apply_changes,
    apply_deltas,
    diff_views,
    endpoint_key,
    flow_view,
    split_endpoint_key,
)
from controller.model import (
    Block,
    Endpoint,
    EndpointState,
    Host,
    Network,
    Policy,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Publication,
    Snapshot,
    mac_for_ip,
)
from controller.pipeline import desired_flows

LABEL_VALUES = ("web", "db", "other")


@dataclass
class Truth:
    """The database as the repository keeps it, and the keys a write logged."""

    rng: random.Random
    revision: int = 0
    networks: dict[str, Network] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    blocks: dict[str, list[Block]] = field(default_factory=dict)
    endpoints: dict[tuple[str, str], Endpoint] = field(default_factory=dict)  # bound or not
    logged: list[tuple[str, str]] = field(default_factory=list)
    home: bool = False  # walks of mostly binds in the host's own block (``bind_home``)

    def log(self, kind: str, key: str) -> None:
        self.logged.append((kind, key))

    def snapshot(self) -> Snapshot:
        blocks = tuple(b for bs in self.blocks.values() for b in bs)
        return Snapshot(
            self.revision, dict(self.networks), dict(self.hosts), blocks,
            tuple(self.endpoints.values()),
        )  # fmt: skip

    def value(self, kind: str, key: str) -> object:
        """The row a change names, as the engine reads it after the writes."""
        if kind == NETWORK:
            return self.networks.get(key)
        if kind == HOST:
            return self.hosts.get(key)
        if kind == BLOCKS:
            return tuple(self.blocks.get(key, ()))
        ep = self.endpoints.get(split_endpoint_key(key))
        return ep if ep is not None and ep.host is not None else None

    # -- writes (each one revision, as the repository bumps) -------------------------------
    def step(self) -> None:
        r = self.rng
        actions = [self.create_network] * 2 + [self.register_host, self.claim_block] * 3
        actions += [self.bind] * (2 if self.home else 12) + [self.unbind, self.delete_endpoint] * 2
        actions += [self.delete_host, self.delete_network, self.update_host, self.set_external]
        actions += [self.publish]
        actions += [self.relabel] * 8 + [self.set_policy] * (1 if self.home else 3)
        if self.home:  # mostly binds in the host's own block, few policies
            actions += [self.bind_home] * 40 + [self.unbind] * 6
        r.choice(actions)()

    def _bump(self) -> None:
        self.revision += 1

    def create_network(self) -> None:
        name = f"n{self.rng.randrange(4)}"
        if name in self.networks:
            return
        self._bump()
        vni = 100 + int(name[1:])
        subnet = IPv4Network(f"10.{int(name[1:])}.0.0/24")
        dual = IPv6Network(f"fd00:{int(name[1:])}::/64") if int(name[1:]) % 2 else None
        self.networks[name] = Network(
            name, vni, subnet, subnet[1], block_prefix=27, subnet6=dual
        )  # odd networks are dual stack (IPv6 blocks and exceptions follow the IPv4 ones)
        self.log(NETWORK, name)

    def delete_network(self) -> None:
        if not self.networks:
            return
        name = self.rng.choice(sorted(self.networks))
        if any(e.network == name and e.host for e in self.endpoints.values()):
            return  # Conflict: still bound
        self._bump()
        del self.networks[name]
        self.blocks.pop(name, None)
        for key in [k for k in self.endpoints if k[0] == name]:
            del self.endpoints[key]  # unbound: not in the model, not logged
        self.log(NETWORK, name)
        self.log(BLOCKS, name)

    def set_external(self) -> None:
        """Make a network external (a conntrack zone) or sealed again (issue 11)."""
        if not self.networks:
            return
        net = self.networks[self.rng.choice(sorted(self.networks))]
        self._bump()
        zone = 1 + int(net.name[1:]) if not net.external else None
        self.networks[net.name] = replace(net, external=not net.external, zone=zone)
        self.log(NETWORK, net.name)

    def publish(self) -> None:
        """Publish an endpoint's port on its host, or withdraw one (issue 11 item 2)."""
        if not self.networks:
            return
        net = self.networks[self.rng.choice(sorted(self.networks))]
        self._bump()
        if net.publications and self.rng.random() < 0.4:
            pubs = net.publications[1:]
        else:
            name = f"e{self.rng.randrange(12)}"
            pub = Publication(
                name, 8000 + self.rng.randrange(50), 80, self.rng.choice(["tcp", "udp"])
            )
            pubs = (*net.publications, pub)
        self.networks[net.name] = replace(net, publications=pubs)
        self.log(NETWORK, net.name)

    def register_host(self) -> None:
        i = self.rng.randrange(6)
        name = f"h{i}"
        if name in self.hosts:
            return
        self._bump()
        self.hosts[name] = Host(name, IPv4Address(f"198.18.0.{i + 1}"), dpid=i + 1, tunnel_port=1)
        self.log(HOST, name)

    def update_host(self) -> None:
        if not self.hosts:
            return
        name = self.rng.choice(sorted(self.hosts))
        host = self.hosts[name]
        self._bump()
        what = self.rng.random()
        if what < 0.3:  # a gateway into its stack for external networks, or none (issue 11)
            last = int(host.underlay_ip) & 0xFF
            egress = IPv4Address(f"198.19.0.{last}") if host.egress_ip is None else None
            port = self.rng.choice([2, 3, 9]) if egress is not None else None
            six = (
                IPv6Address(f"fdfa::c613:{last:x}")
                if egress is not None and self.rng.random() < 0.6
                else None
            )  # and an IPv6 egress address, or not
            self.hosts[name] = replace(host, egress_ip=egress, gateway_port=port, egress_ip6=six)
        elif what < 0.65:
            port = self.rng.choice([1, 2, 3])
            self.hosts[name] = replace(host, tunnel_port=port)
            for key, ep in list(self.endpoints.items()):
                if ep.host == name and ep.ofport == port:  # released: a port of the tunnel
                    self.endpoints[key] = replace(ep, host=None, ofport=None)
                    self.log(ENDPOINT, endpoint_key(*key))
        else:
            last = int(host.underlay_ip) & 0xFF
            self.hosts[name] = replace(host, underlay_ip=IPv4Address(f"198.18.1.{last}"))
        self.log(HOST, name)

    def delete_host(self) -> None:
        if not self.hosts:
            return
        name = self.rng.choice(sorted(self.hosts))
        self._bump()
        del self.hosts[name]
        self.log(HOST, name)
        for key, ep in list(self.endpoints.items()):
            if ep.host == name:
                self.endpoints[key] = replace(ep, host=None, ofport=None)
                self.log(ENDPOINT, endpoint_key(*key))
        for net, blocks in self.blocks.items():
            if any(b.host == name for b in blocks):
                self.blocks[net] = [b for b in blocks if b.host != name]
                self.log(BLOCKS, net)

    def claim_block(self) -> None:
        if not self.networks or not self.hosts:
            return
        net = self.networks[self.rng.choice(sorted(self.networks))]
        host = self.rng.choice(sorted(self.hosts))
        taken = {b.cidr for b in self.blocks.get(net.name, [])}
        free = [c for c in net.subnet.subnets(new_prefix=net.block_prefix) if c not in taken]
        if not free:
            return
        self._bump()
        self.blocks.setdefault(net.name, []).append(Block(net.name, self.rng.choice(free), host))
        self.log(BLOCKS, net.name)

    def bind(self) -> None:
        """Bind (create if new, move if bound elsewhere) an endpoint to a host port."""
        if not self.networks or not self.hosts:
            return
        net = self.networks[self.rng.choice(sorted(self.networks))]
        name = f"e{self.rng.randrange(12)}"
        host = self.hosts[self.rng.choice(sorted(self.hosts))]
        port = self.rng.randrange(1, 8)  # 1..3 may be a tunnel port: that bind is refused
        if port == host.tunnel_port or any(
            e.host == host.name and e.ofport == port for e in self.endpoints.values()
        ):
            return
        key = (net.name, name)
        ep = self.endpoints.get(key)
        if ep is None:
            ip = net.subnet[self.rng.randrange(2, 250)]
            if any(e.network == net.name and e.ip == ip for e in self.endpoints.values()):
                return
            app = self.rng.choice(LABEL_VALUES)
            ep = Endpoint(net.name, name, ip, mac_for_ip(ip), labels=(("app", app),))
        self._bump()
        self.endpoints[key] = replace(
            ep, host=host.name, ofport=port, state=EndpointState.PENDING, bound_rev=self.revision
        )
        self.log(ENDPOINT, endpoint_key(*key))

    def bind_home(self) -> None:
        """Bind (or move) an endpoint to an address in its host's own block: the common case
        at scale, which the engine patches instead of recomputing."""
        blocks = [b for bs in self.blocks.values() for b in bs if b.host in self.hosts]
        if not blocks:
            return
        block = self.rng.choice(blocks)
        net, host = self.networks[block.network], self.hosts[block.host]
        name = f"e{self.rng.randrange(12)}"
        port = self.rng.randrange(1, 8)
        key = (net.name, name)
        if port == host.tunnel_port or any(
            e.host == host.name and e.ofport == port and (e.network, e.name) != key
            for e in self.endpoints.values()
        ):
            return
        ep = self.endpoints.get(key)
        if ep is not None and ep.ip not in block.cidr:
            return  # its address is in another block: not a bind at home
        if ep is None:
            ip = block.cidr[self.rng.randrange(1, block.cidr.num_addresses - 1)]
            if any(e.network == net.name and e.ip == ip for e in self.endpoints.values()):
                return
            ep = Endpoint(net.name, name, ip, mac_for_ip(ip), labels=(("app", "web"),))
        self._bump()
        self.endpoints[key] = replace(
            ep, host=host.name, ofport=port, state=EndpointState.PENDING, bound_rev=self.revision
        )
        self.log(ENDPOINT, endpoint_key(*key))

    def relabel(self) -> None:
        """PATCH an endpoint's labels (a revision, the endpoint logged)."""
        key = self._some_endpoint()
        if key is None:
            return
        labels = tuple(sorted({"app": self.rng.choice(LABEL_VALUES)}.items()))
        self._bump()
        self.endpoints[key] = replace(self.endpoints[key], labels=labels)
        self.log(ENDPOINT, endpoint_key(*key))

    def set_policy(self) -> None:
        """Create or delete a policy of a network (the network logged)."""
        if not self.networks:
            return
        net = self.networks[self.rng.choice(sorted(self.networks))]
        name = self.rng.choice(["p1", "p2"])
        rest = tuple(p for p in net.policies if p.name != name)
        if len(rest) == len(net.policies):
            app = (("app", self.rng.choice(LABEL_VALUES)),)
            peer = (("app", self.rng.choice(LABEL_VALUES)),)
            rule = PolicyRule(peers=(PolicyPeer(selector=peer),), ports=(PolicyPort("tcp", 80),))
            egress = (rule,) if self.rng.random() < 0.5 else None
            rest += (Policy(name, app, ingress=(rule,), egress=egress),)
        self._bump()
        self.networks[net.name] = replace(net, policies=rest)
        self.log(NETWORK, net.name)

    def _some_endpoint(self) -> tuple[str, str] | None:
        return self.rng.choice(sorted(self.endpoints)) if self.endpoints else None

    def unbind(self) -> None:
        key = self._some_endpoint()
        if key is None or self.endpoints[key].host is None:
            return
        self._bump()
        self.endpoints[key] = replace(self.endpoints[key], host=None, ofport=None)
        self.log(ENDPOINT, endpoint_key(*key))

    def delete_endpoint(self) -> None:
        key = self._some_endpoint()
        if key is None:
            return
        bound = self.endpoints.pop(key).host is not None
        if bound:  # an unbound delete bumps nothing and logs nothing: no flows
            self._bump()
            self.log(ENDPOINT, endpoint_key(*key))


def _full(truth: Truth) -> dict[str, frozenset[Flow]]:
    snap = truth.snapshot()
    return {h: desired_flows(snap, h) for h in snap.hosts}


@pytest.mark.parametrize("seed", range(200))
def test_incremental_flows_equal_full_recompute(seed: int) -> None:
    rng = random.Random(seed)
    truth = Truth(rng)
    intent = Intent.from_snapshot(truth.snapshot())
    flows: dict[str, frozenset[Flow]] = {}
    batch = rng.choice([1, 1, 2, 5])  # writes read by one engine pass
    for step in range(100):
        truth.step()
        if (step + 1) % batch:
            continue
        changes = [Change(k, key, truth.value(k, key)) for k, key in truth.logged]  # type: ignore[arg-type]
        truth.logged.clear()
        touched = apply_changes(intent, changes, truth.revision)
        for host in touched:
            if host in intent.hosts:
                flows[host] = desired_flows(intent, host, intent.index)
            else:
                flows.pop(host, None)
        assert diff_views(truth.snapshot(), intent.snapshot()) == [], f"step {step}"
        assert flows == _full(truth), f"seed {seed} step {step}"


def _patched_walk(seed: int) -> int:
    """A walk with each host's flows kept as the engine keeps them: patched by the flows an
    endpoint takes and gives (``apply_deltas``) where it can, else recomputed; compared with
    the full computation after every pass. Returns how many hosts were patched."""
    rng = random.Random(seed)
    truth = Truth(rng, home=seed % 2 == 0)
    intent = Intent.from_snapshot(truth.snapshot())
    flows: dict[str, frozenset[Flow]] = {}
    batch = rng.choice([1, 1, 2, 5])
    patched = 0
    for step in range(100):
        truth.step()
        if (step + 1) % batch:
            continue
        changes = [Change(k, key, truth.value(k, key)) for k, key in truth.logged]  # type: ignore[arg-type]
        truth.logged.clear()
        deltas = apply_deltas(intent, changes, truth.revision, flows)
        patched += len(deltas.patch)
        for host in deltas.full:
            if host in intent.hosts:
                flows[host] = desired_flows(intent, host, intent.index)
            else:
                flows.pop(host, None)
        for host, (gone, new) in deltas.patch.items():
            assert not gone & new
            flows[host] = (flows[host] - gone) | new
        assert flows == _full(truth), f"seed {seed} step {step}"
    return patched


@pytest.mark.parametrize("seed", range(200))
def test_patched_flows_equal_full_recompute(seed: int) -> None:
    _patched_walk(seed)


def test_the_walks_do_patch() -> None:
    """The walks above exercise the patch, not only the full computation."""
    assert sum(_patched_walk(seed) for seed in range(0, 20, 2)) >= 20


def test_a_bind_in_its_own_block_is_a_patch_of_its_own_flows() -> None:
    net = Network("n", 5, IPv4Network("10.1.0.0/24"), IPv4Address("10.1.0.1"), block_prefix=26)
    hosts = {h: Host(h, IPv4Address(f"198.18.0.{i}")) for i, h in enumerate(("h1", "h2"), 1)}
    blocks = (Block("n", IPv4Network("10.1.0.0/26"), "h1"),)
    intent = Intent.from_snapshot(Snapshot(1, {"n": net}, hosts, blocks, ()))
    ip = IPv4Address("10.1.0.5")
    home = Endpoint("n", "a", ip, mac_for_ip(ip), "h1", 4, EndpointState.PENDING, 2)
    before = desired_flows(intent, "h1", intent.index)
    deltas = apply_deltas(intent, [Change(ENDPOINT, "n/a", home)], 2, ["h1", "h2"])
    after = desired_flows(intent, "h1", intent.index)
    assert deltas.full == frozenset() and deltas.patch == {"h1": (frozenset(), after - before)}
    assert len(after - before) == 4  # classify IPv4 and ARP, the ARP guard, delivery
    moved = replace(home, ofport=6)
    deltas = apply_deltas(intent, [Change(ENDPOINT, "n/a", moved)], 3, ["h1", "h2"])
    gone, new = deltas.patch["h1"]
    assert (before | {*after} - gone) | new == desired_flows(intent, "h1", intent.index)
    deltas = apply_deltas(intent, [Change(ENDPOINT, "n/a", None)], 4, ["h2"])
    assert deltas.full == {"h1"} and not deltas.patch, "h1's flows are not known: recomputed"


def test_an_endpoint_bind_touches_its_host_only_unless_it_lives_away() -> None:
    truth = Truth(random.Random(0))
    net = Network("n", 7, IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
    truth.networks["n"] = net
    for i in (1, 2, 3):
        truth.hosts[f"h{i}"] = Host(f"h{i}", IPv4Address(f"198.18.0.{i}"), dpid=i)
    truth.blocks["n"] = [Block("n", IPv4Network("10.0.0.0/26"), "h1")]
    intent = Intent.from_snapshot(truth.snapshot())
    ip = IPv4Address("10.0.0.5")
    home = Endpoint("n", "a", ip, mac_for_ip(ip), "h1", 5)
    assert apply_changes(intent, [Change(ENDPOINT, "n/a", home)], 1) == {"h1"}
    away = replace(home, host="h2")  # moved away from its block's host: a /32 on every host
    assert apply_changes(intent, [Change(ENDPOINT, "n/a", away)], 2) == {"h1", "h2", "h3"}
    assert apply_changes(intent, [Change(ENDPOINT, "n/a", None)], 3) == {"h1", "h2", "h3"}
    assert apply_changes(intent, [Change(BLOCKS, "n", ())], 4) == {"h1", "h2", "h3"}
    assert not intent.endpoints and intent.revision == 4


def _remote_before(snap: Snapshot, host_name: str) -> list[Flow]:
    """The flows towards other hosts as ``desired_flows`` built them, per host, before
    ``pipeline.RemoteFlows`` shared them (kept here as the reference)."""
    from controller import pipeline as p

    host = snap.hosts[host_name]
    idx = p.index(snap)
    flows = [
        p._tunnel_from(host.tunnel_port, str(peer.underlay_ip))
        for peer in snap.hosts.values()
        if peer.name != host.name
    ]
    for block in snap.blocks:
        bnet, owner = snap.networks.get(block.network), snap.hosts.get(block.host)
        if bnet is None or owner is None or owner.name == host.name:
            continue
        ip = str(owner.underlay_ip)
        flows.append(p._route(bnet.vni, block.cidr, p.PRIO_NORMAL, ip, host.tunnel_port))
        if bnet.subnet6 is not None:
            six = p.embed_net(bnet.subnet6, block.cidr)
            flows.append(p.route6(p.T_REMOTE, bnet.vni, six, p.PRIO_NORMAL, ip, host.tunnel_port))
    for net, ep in idx.exceptions:
        there = snap.hosts.get(ep.host or "")
        if there is None or there.name == host.name:
            continue
        ip, cidr = str(there.underlay_ip), IPv4Network(ep.ip)
        flows.append(p._route(net.vni, cidr, p.PRIO_EXCEPTION, ip, host.tunnel_port))
        if net.subnet6 is not None:
            six = p.embed_net(net.subnet6, cidr)
            flows.append(p.route6(p.T_REMOTE, net.vni, six, p.PRIO_EXCEPTION, ip, host.tunnel_port))
    return flows


@pytest.mark.parametrize("seed", range(40))
def test_shared_remote_flows_equal_the_per_host_computation(seed: int) -> None:
    """``RemoteFlows`` (one per state, shared by every host computed with it) gives each host
    the same flows as the per-host loops it replaced, and the engine's ``_unique`` of the
    list equals the sorted set."""
    from controller import pipeline as p
    from controller.engine import _packed, _unique

    rng = random.Random(seed)
    truth = Truth(rng, home=seed % 2 == 0)
    for step in range(60):
        truth.step()
        if step % 6:
            continue
        snap = truth.snapshot()
        idx = p.index(snap)
        remote = p.RemoteFlows(snap, idx)
        for name, host in snap.hosts.items():
            listed = p.desired_list(snap, name, idx, remote)
            before = frozenset(p._own_flows(snap, host, idx) + _remote_before(snap, name))
            assert frozenset(listed) == before == desired_flows(snap, name), f"{seed} {step}"
            assert _unique(listed) == _packed(before)


def _diff_by_flow_view(full: Snapshot, model: Snapshot) -> list[str]:
    """``diff_views`` as it was: sets of ``flow_view``'s values (a new endpoint object each)."""
    out: list[str] = []
    names = ("networks", "hosts", "blocks", "endpoints")
    for name, a, b in zip(names, flow_view(full), flow_view(model), strict=True):
        sa, sb = set(a), set(b)  # type: ignore[call-overload]
        if sa != sb:
            missing = sorted(map(str, sa - sb))[:3]
            extra = sorted(map(str, sb - sa))[:3]
            out.append(f"{name}: {len(sa - sb)} missing {missing}, {len(sb - sa)} extra {extra}")
    return out


CHANGES = {  # a field of an endpoint and a value that changes it; readiness does not count
    "state": EndpointState.READY,
    "bound_rev": 10**6,
    "ready_at": None,
    "port_name": "other",
    "ofport": 4242,
    "mac": "0a:58:00:00:00:99",
    "labels": (("app", "changed"),),
    "host": None,
    "ip": IPv4Address("10.250.0.9"),
}


@pytest.mark.parametrize("seed", range(40))
def test_the_audits_compare_finds_what_a_compare_of_flow_views_finds(seed: int) -> None:
    """The audit's compare (endpoints by their fields) answers what comparing ``flow_view``'s
    endpoint objects answered, message included: readiness and the fields left out of
    equality are no difference, anything else the flows depend on is."""
    rng = random.Random(seed)
    truth = Truth(rng)
    for step in range(2000):  # at least 60 steps, then until some endpoint is bound
        truth.step()
        if step >= 60 and any(e.host for e in truth.endpoints.values()):
            break
    full = truth.snapshot()
    assert diff_views(full, full) == []
    bound = [e for e in full.endpoints if e.host]
    assert bound
    picked = rng.sample(bound, min(len(bound), rng.choice([1, 2, 5])))
    edits = {(e.network, e.name): rng.choice(list(CHANGES)) for e in picked}
    model = replace(
        full,
        endpoints=tuple(
            replace(e, **{edits[(e.network, e.name)]: CHANGES[edits[(e.network, e.name)]]})
            if (e.network, e.name) in edits
            else e
            for e in full.endpoints
        ),
    )
    assert diff_views(full, model) == _diff_by_flow_view(full, model)
    assert diff_views(model, full) == _diff_by_flow_view(model, full)
    counted = {"state", "bound_rev", "ready_at", "port_name"}
    assert (diff_views(full, model) == []) == all(f in counted for f in edits.values())
