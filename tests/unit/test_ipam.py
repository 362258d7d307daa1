"""The pure allocator: static IPs, host-affinity blocks, exceptions, reclaim, exhaustion, VNIs."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller import ipam
from controller.errors import AddressExhausted, Conflict, InvalidRequest
from controller.model import Block, Network, mac_for_ip

A = IPv4Address


def net(subnet: str = "10.0.0.0/24", block_prefix: int = 26, name: str = "n1") -> Network:
    sub = IPv4Network(subnet)
    return Network(name, 1, sub, ipam.default_gateway(sub), block_prefix)


def block(cidr: str, host: str, network: str = "n1") -> Block:
    return Block(network, IPv4Network(cidr), host)


def test_default_gateway_is_first_host_address() -> None:
    assert ipam.default_gateway(IPv4Network("10.1.0.0/16")) == A("10.1.0.1")


def test_first_allocation_for_a_host_claims_the_first_block() -> None:
    got = ipam.allocate(net(), set(), [], host="h1")
    assert got.ip == A("10.0.0.2")  # .0 network, .1 gateway
    assert got.mac == "0a:58:0a:00:00:02" == mac_for_ip(got.ip)
    assert got.block == block("10.0.0.0/26", "h1")
    assert got.reclaimed is None


def test_host_fills_its_own_block_before_claiming_another() -> None:
    blocks = [block("10.0.0.0/26", "h1"), block("10.0.0.64/26", "h2")]
    got = ipam.allocate(net(), {A("10.0.0.2")}, blocks, host="h1")
    assert (got.ip, got.block) == (A("10.0.0.3"), None)
    got = ipam.allocate(net(), set(), blocks, host="h2")
    assert (got.ip, got.block) == (A("10.0.0.64"), None)


def test_full_own_block_claims_the_next_unowned_block() -> None:
    used = {A(f"10.0.0.{i}") for i in range(2, 64)}
    blocks = [block("10.0.0.0/26", "h1"), block("10.0.0.64/26", "h2")]
    got = ipam.allocate(net(), used, blocks, host="h1")
    assert got.block == block("10.0.0.128/26", "h1")
    assert got.ip == A("10.0.0.128")


def test_no_free_block_takes_any_free_address_as_an_exception() -> None:
    blocks = [block(f"10.0.0.{i * 64}/26", f"h{i}") for i in range(4)]
    used = {A(f"10.0.0.{i}") for i in range(2, 200)}
    got = ipam.allocate(net(), used, blocks, host="h0")
    assert (got.ip, got.block) == (A("10.0.0.200"), None)  # in h3's block: a /32 exception


def test_unowned_block_without_free_address_is_skipped() -> None:
    used = {A(f"10.0.0.{i}") for i in range(2, 64)}  # allocated without a host
    got = ipam.allocate(net(), used, [], host="h1")
    assert got.block == block("10.0.0.64/26", "h1")
    assert got.ip == A("10.0.0.64")


def test_without_host_prefers_unowned_space_and_creates_no_block() -> None:
    blocks = [block("10.0.0.0/26", "h1")]
    got = ipam.allocate(net(), set(), blocks)
    assert (got.ip, got.block) == (A("10.0.0.64"), None)


def test_without_host_falls_back_to_owned_space() -> None:
    blocks = [block(f"10.0.0.{i * 64}/26", f"h{i}") for i in range(4)]
    got = ipam.allocate(net(), {A("10.0.0.2")}, blocks)
    assert (got.ip, got.block) == (A("10.0.0.3"), None)


def test_block_never_larger_than_subnet() -> None:
    got = ipam.allocate(net("10.0.0.0/28", block_prefix=26), set(), [], host="h1")
    assert got.block == block("10.0.0.0/28", "h1")


def test_requested_ip_is_honoured() -> None:
    got = ipam.allocate(net(), {A("10.0.0.2")}, [], host="h1", requested=A("10.0.0.77"))
    assert (got.ip, got.block, got.mac) == (A("10.0.0.77"), None, "0a:58:0a:00:00:4d")


@pytest.mark.parametrize(
    ("ip", "words"),
    [
        ("10.0.1.5", "outside subnet"),
        ("10.0.0.0", "network address"),
        ("10.0.0.255", "broadcast address"),
        ("10.0.0.1", "gateway"),
    ],
)
def test_requested_ip_refused_when_not_usable(ip: str, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        ipam.allocate(net(), set(), [], requested=A(ip))


def test_requested_ip_in_use_is_a_conflict_even_if_reclaimable() -> None:
    reservation = ipam.Reservation("old", A("10.0.0.9"))
    with pytest.raises(Conflict, match="already in use"):
        ipam.allocate(
            net(), {A("10.0.0.9")}, [], requested=A("10.0.0.9"), reclaimable=[reservation]
        )


def test_full_subnet_reclaims_the_oldest_reservation() -> None:
    network = net("10.0.0.0/29")  # usable .2 .. .6
    used = {A(f"10.0.0.{i}") for i in range(2, 7)}
    oldest = ipam.Reservation("gone-first", A("10.0.0.5"))
    newer = ipam.Reservation("gone-later", A("10.0.0.3"))
    got = ipam.allocate(network, used, [], host="h1", reclaimable=[oldest, newer])
    assert (got.ip, got.reclaimed, got.block) == (A("10.0.0.5"), oldest, None)


def test_exhausted_subnet_names_the_subnet_and_allocates_nothing() -> None:
    network = net("10.0.0.0/29")
    used = frozenset(A(f"10.0.0.{i}") for i in range(2, 7))
    with pytest.raises(AddressExhausted, match=r"10\.0\.0\.0/29") as caught:
        ipam.allocate(network, used, [], host="h1")
    assert isinstance(caught.value, Conflict)
    with pytest.raises(AddressExhausted):
        ipam.allocate(network, used, [])


def test_slash_30_holds_exactly_one_endpoint() -> None:
    network = net("10.0.0.0/30")
    ipam.check_network(network.subnet, network.gateway, 26)
    got = ipam.allocate(network, set(), [], host="h1")
    assert got.ip == A("10.0.0.2")
    with pytest.raises(AddressExhausted):
        ipam.allocate(network, {got.ip}, [], host="h1")


@pytest.mark.parametrize("subnet", ["10.0.0.0/31", "10.0.0.0/32"])
def test_subnets_too_small_for_gateway_and_one_endpoint_are_refused(subnet: str) -> None:
    sub = IPv4Network(subnet)
    with pytest.raises(InvalidRequest, match="too small"):
        ipam.check_network(sub, sub.network_address, 26)


@pytest.mark.parametrize(
    ("subnet", "gateway", "words"),
    [
        ("10.0.0.0/24", "10.0.1.1", "outside subnet"),
        ("10.0.0.0/24", "10.0.0.0", "network or broadcast"),
        ("10.0.0.0/24", "10.0.0.255", "network or broadcast"),
        ("224.0.0.0/24", "224.0.0.1", "multicast"),
        ("127.0.0.0/24", "127.0.0.1", "loopback"),
        ("240.0.0.0/24", "240.0.0.1", "reserved"),
        ("126.0.0.0/7", "126.0.0.1", "loopback"),
        ("0.0.0.0/1", "0.0.0.1", "this network"),
        ("169.254.0.0/16", "169.254.0.1", "link-local"),
    ],
)
def test_bad_networks_are_refused(subnet: str, gateway: str, words: str) -> None:
    with pytest.raises(InvalidRequest, match=words):
        ipam.check_network(IPv4Network(subnet), A(gateway), 26)


def test_gateway_elsewhere_in_subnet_is_skipped_by_allocation() -> None:
    sub = IPv4Network("10.0.0.0/29")
    network = Network("n1", 1, sub, A("10.0.0.2"), 26)
    got = ipam.allocate(network, set(), [], host="h1")
    assert got.ip == A("10.0.0.1")
    got = ipam.allocate(network, {A("10.0.0.1")}, [], host="h1")
    assert got.ip == A("10.0.0.3")


def test_two_networks_with_the_same_cidr_are_independent() -> None:
    first, second = net(name="a"), net(name="b")
    taken = ipam.allocate(first, set(), [], host="h1")
    again = ipam.allocate(second, set(), [], host="h1")
    assert taken.ip == again.ip == A("10.0.0.2")
    assert again.block is not None and again.block.network == "b"


def test_large_subnet_allocates_quickly() -> None:
    network = net("10.0.0.0/8")
    blocks = [block("10.0.0.0/26", "h1")]
    used = {A("10.0.0.2")}
    got = ipam.allocate(network, used, blocks, host="h2")
    assert got.block == Block("n1", IPv4Network("10.0.0.64/26"), "h2")


def test_vni_lowest_free_requested_and_conflicts() -> None:
    assert ipam.allocate_vni(set()) == 1
    assert ipam.allocate_vni({1, 2, 4}) == 3
    assert ipam.allocate_vni({2, 3}) == 1
    assert ipam.allocate_vni({1, 2}, requested=7) == 7
    with pytest.raises(Conflict, match="vni 2"):
        ipam.allocate_vni({1, 2}, requested=2)
    with pytest.raises(InvalidRequest):
        ipam.allocate_vni(set(), requested=0)
    with pytest.raises(InvalidRequest):
        ipam.allocate_vni(set(), requested=ipam.MAX_VNI + 1)


def test_vni_space_exhausted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ipam, "MAX_VNI", 3)
    with pytest.raises(AddressExhausted, match="VNI"):
        ipam.allocate_vni({1, 2, 3})


def test_own_blocks_alone_choose_what_the_whole_network_would() -> None:
    rng = random.Random(9)
    network = net("10.0.0.0/24", block_prefix=28)
    for _ in range(300):
        hosts = ["h1", "h2", "h3"]
        blocks = [block(f"10.0.0.{i * 16}/28", rng.choice(hosts))
                  for i in range(16) if rng.random() < 0.6]  # fmt: skip
        used = {A(f"10.0.0.{i}") for i in range(256) if rng.random() < rng.random()}
        mine = [b for b in blocks if b.host == "h1"]
        inside = {ip for ip in used if any(ip in b.cidr for b in mine)}
        try:
            whole: ipam.Allocation | None = ipam.allocate(network, used, blocks, host="h1")
        except AddressExhausted:
            whole = None
        got = ipam.allocate_in_own_blocks(network, inside, blocks, "h1")
        if got is None:  # h1's blocks are full (or it has none): the whole network decides
            assert all(ip in used or ip == network.gateway or ip.packed[-1] in (0, 255)
                       for b in mine for ip in b.cidr)  # fmt: skip
        else:
            assert got.block is None and any(got.ip in b.cidr for b in mine)
            assert whole is None or got == whole
