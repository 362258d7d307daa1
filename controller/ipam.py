"""Pure address management: subnet checks, host-affinity blocks, endpoint IPs, MACs and VNIs.

No database here: the repository reads what is in use, calls ``allocate`` and writes the
result. The rules, in order, for an endpoint address:

1. A requested address must be a usable address of the subnet (not the network, broadcast
   or gateway address: ``InvalidRequest``) and free (``Conflict``).
2. With a host: the first free address of a block owned by that host; else the first
   unowned block with a free address is claimed for the host (a new ``Block``); else any
   free address of the subnet (it becomes a /32 exception in the dataplane).
3. Without a host: the first free address outside every owned block, then anywhere.
4. A full subnet reclaims the first of ``reclaimable`` (reservations, unbound names still
   holding an address, that the caller allows to be taken back: ``controller.db.allocate``
   decides which); with none, ``AddressExhausted``. Nothing is allocated on failure.

Blocks are ``max(block_prefix, subnet prefixlen)`` long and aligned inside the subnet.
Addresses are handled as ints inside this module for speed on large subnets.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from controller.errors import AddressExhausted, Conflict, InvalidRequest
from controller.model import Block, Network, mac_for_ip
from vxcommon.addr6 import MAX_PREFIX6

MIN_VNI = 1
MAX_VNI = 2**24 - 1
MAX_SUBNET_PREFIX = 30
# Ranges a virtual network must not overlap: their addresses mean something to every IP
# stack (a container would route them to itself, its link or a group, never to a peer).
SPECIAL_RANGES = (
    (IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (IPv4Network("127.0.0.0/8"), "loopback (127.0.0.0/8)"),
    (IPv4Network("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
    (IPv4Network("224.0.0.0/4"), "multicast (224.0.0.0/4)"),
    (IPv4Network("240.0.0.0/4"), "reserved and broadcast (240.0.0.0/4)"),
)
# IPv6 ranges a network's subnet6 must not overlap (the same reasons as above): the
# IPv4-compatible, mapped and loopback addresses (::/8), link-local, site-local and multicast.
SPECIAL_RANGES6 = (
    (IPv6Network("::/8"), "reserved (::/8: unspecified, loopback, IPv4-mapped)"),
    (IPv6Network("fe80::/10"), "link-local (fe80::/10)"),
    (IPv6Network("fec0::/10"), "deprecated site-local (fec0::/10)"),
    (IPv6Network("ff00::/8"), "multicast (ff00::/8)"),
)


@dataclass(frozen=True, slots=True)
class Reservation:
    """An unbound endpoint that still holds an address (reclaimable when the subnet is full)."""

    name: str
    ip: IPv4Address


@dataclass(frozen=True, slots=True)
class Allocation:
    """The address chosen for an endpoint, the block to create (if any) and what was reclaimed."""

    ip: IPv4Address
    mac: str
    block: Block | None = None
    reclaimed: Reservation | None = None


def default_gateway(subnet: IPv4Network) -> IPv4Address:
    """The default gateway of a subnet: its first host address."""
    return subnet.network_address + 1


def check_subnet(subnet: IPv4Network) -> None:
    """Raise ``InvalidRequest`` unless ``subnet`` can hold a network's endpoints."""
    if subnet.prefixlen > MAX_SUBNET_PREFIX:
        raise InvalidRequest(
            f"subnet {subnet} is too small: it must hold the gateway and at least one endpoint "
            f"besides its network and broadcast addresses (use a /{MAX_SUBNET_PREFIX} or larger)"
        )
    for special, what in SPECIAL_RANGES:
        if subnet.overlaps(special):
            raise InvalidRequest(
                f"subnet {subnet} overlaps the {what} range: choose a unicast range outside "
                "it, e.g. in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
            )


def check_subnet6(subnet6: IPv6Network, others: Iterable[tuple[str, IPv6Network]] = ()) -> None:
    """Raise ``InvalidRequest`` unless ``subnet6`` can be a network's IPv6 subnet (a unicast
    prefix of at most /96: the low 32 bits carry the IPv4 address), or ``Conflict`` if it
    overlaps the IPv6 subnet of another network (``others``: name and subnet6)."""
    if subnet6.prefixlen > MAX_PREFIX6:
        raise InvalidRequest(
            f"subnet6 {subnet6} is too long: use a prefix of /{MAX_PREFIX6} or shorter (each "
            "endpoint's IPv6 address is the prefix with its IPv4 address as the low 32 bits)"
        )
    for special, what in SPECIAL_RANGES6:
        if subnet6.overlaps(special):
            raise InvalidRequest(
                f"subnet6 {subnet6} overlaps the {what} range: choose a unicast prefix, "
                "e.g. a unique local one in fd00::/8 such as fd00:10::/64"
            )
    for name, other in others:
        if subnet6.overlaps(other):
            raise Conflict(
                f"subnet6 {subnet6} overlaps {other} of network {name!r}: IPv6 subnets of "
                "networks must not overlap"
            )


def check_network(subnet: IPv4Network, gateway: IPv4Address, block_prefix: int) -> None:
    """Raise ``InvalidRequest`` unless the subnet, gateway and block size make a usable network."""
    check_subnet(subnet)
    if gateway not in subnet:
        raise InvalidRequest(f"gateway {gateway} is outside subnet {subnet}")
    if gateway in (subnet.network_address, subnet.broadcast_address):
        raise InvalidRequest(
            f"gateway {gateway} is the network or broadcast address of subnet {subnet}"
        )
    if not 1 <= block_prefix <= 32:
        raise InvalidRequest(f"block_prefix {block_prefix} must be between 1 and 32")


def block_prefixlen(network: Network) -> int:
    """The prefix length of the network's host-affinity blocks."""
    return max(network.block_prefix, network.subnet.prefixlen)


def check_requested_ip(network: Network, ip: IPv4Address) -> None:
    """Raise ``InvalidRequest`` unless ``ip`` is an address an endpoint of ``network`` may hold."""
    subnet = network.subnet
    if ip not in subnet:
        raise InvalidRequest(f"{ip} is outside subnet {subnet} of network {network.name!r}")
    if ip == subnet.network_address:
        raise InvalidRequest(f"{ip} is the network address of subnet {subnet}")
    if ip == subnet.broadcast_address:
        raise InvalidRequest(f"{ip} is the broadcast address of subnet {subnet}")
    if ip == network.gateway:
        raise InvalidRequest(f"{ip} is the gateway of network {network.name!r}")


class _Space:
    """The usable addresses of one network as ints, with the used ones."""

    def __init__(self, network: Network, used: Iterable[IPv4Address]) -> None:
        self.first = int(network.subnet.network_address)
        self.last = int(network.subnet.broadcast_address)
        self.gateway = int(network.gateway)
        self.used = {int(ip) for ip in used}
        self.block_size = 2 ** (32 - block_prefixlen(network))

    def first_free(self, start: int, end: int) -> int | None:
        """The lowest free usable address in ``[start, end)``, or None."""
        for candidate in range(max(start, self.first + 1), min(end, self.last)):
            if candidate != self.gateway and candidate not in self.used:
                return candidate
        return None

    def first_free_in_own(self, blocks: Iterable[Block], host: str) -> int | None:
        """The lowest free address of the blocks ``host`` owns (in address order), or None."""
        for start in sorted(int(b.cidr.network_address) for b in blocks if b.host == host):
            found = self.first_free(start, start + self.block_size)
            if found is not None:
                return found
        return None

    def block_starts(self) -> range:
        """The first address of every block of the subnet, in order."""
        return range(self.first, self.last + 1, self.block_size)


def allocate(
    network: Network,
    used: Collection[IPv4Address],
    blocks: Sequence[Block],
    host: str | None = None,
    requested: IPv4Address | None = None,
    reclaimable: Sequence[Reservation] = (),
) -> Allocation:
    """Choose an address for a new endpoint of ``network`` (see the module rules).

    ``used``: every address held in the network; ``blocks``: the network's blocks;
    ``reclaimable``: reservations that may be taken back, oldest first.
    """
    if requested is not None:
        check_requested_ip(network, requested)
        if requested in used:
            raise Conflict(f"{requested} is already in use in network {network.name!r}")
        return Allocation(requested, mac_for_ip(requested))

    space = _Space(network, used)
    owned = {int(block.cidr.network_address) for block in blocks}
    size = space.block_size

    if host is not None:
        found = space.first_free_in_own(blocks, host)
        if found is not None:
            return _allocation(found)
    for start in space.block_starts():
        if start in owned:
            continue
        found = space.first_free(start, start + size)
        if found is not None:
            if host is None:
                return _allocation(found)
            cidr = IPv4Network((start, block_prefixlen(network)))
            return _allocation(found, block=Block(network.name, cidr, host))
    found = space.first_free(space.first, space.last + 1)
    if found is not None:
        return _allocation(found)
    if reclaimable:
        oldest = reclaimable[0]
        return Allocation(oldest.ip, mac_for_ip(oldest.ip), reclaimed=oldest)
    raise AddressExhausted(
        f"subnet {network.subnet} of network {network.name!r} is exhausted: every address is "
        "held by an endpoint and no unbound reservation is left to reclaim"
    )


def allocate_in_own_blocks(
    network: Network, used: Collection[IPv4Address], blocks: Iterable[Block], host: str
) -> Allocation | None:
    """Rule 2's first step alone: the first free address of a block ``host`` owns, as
    ``allocate`` would choose it, or None (then ``allocate`` decides with everything). ``used``
    need only hold the addresses inside ``host``'s blocks, so a caller can read just those."""
    found = _Space(network, used).first_free_in_own(blocks, host)
    return _allocation(found) if found is not None else None


def _allocation(ip_int: int, block: Block | None = None) -> Allocation:
    ip = IPv4Address(ip_int)
    return Allocation(ip, mac_for_ip(ip), block=block)


def allocate_vni(used: Collection[int], requested: int | None = None) -> int:
    """The requested VNI if free (else ``Conflict``), or the lowest free one in 1..16777215."""
    if requested is not None:
        if not MIN_VNI <= requested <= MAX_VNI:
            raise InvalidRequest(f"vni {requested} must be between {MIN_VNI} and {MAX_VNI}")
        if requested in used:
            raise Conflict(f"vni {requested} is already used by another network")
        return requested
    candidate = MIN_VNI
    for vni in sorted(set(used)):
        if vni < candidate:
            continue
        if vni > candidate:
            break
        candidate += 1
    if candidate > MAX_VNI:
        raise AddressExhausted(f"every VNI ({MIN_VNI}..{MAX_VNI}) is already used by a network")
    return candidate
