"""LinkOps: the agent's idempotent verbs on network devices (veths, namespaces) via pyroute2.

Device names derive from the endpoint's identity (``hostagent.plug.device_names``), so a
retry finds what a crashed attempt made.

With the userspace datapath ovs-vswitchd reads the host side through a packet socket and never
fills in checksums the container's kernel left to the NIC: TX checksum offload must be off on
the container side, or TCP fails while ping works.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hostagent.edges import LinkInfo
from hostagent.errors import InvalidRequest, LinkError, NotFound

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: the namespace's type (Linux 4.11)
# The network namespaces no container lives in: the agent's own and the init process's.
HOST_NETNS = ("/proc/thread-self/ns/net", "/proc/1/ns/net")
_libc = ctypes.CDLL(None, use_errno=True)


IFA_F_NODAD = 0x02  # linux/if_addr.h: no duplicate address detection for this address
IFA_F_TENTATIVE = 0x40  # linux/if_addr.h: not usable yet (duplicate address detection)
AF_INET6 = socket.AF_INET6
# The container side of a dual-stack endpoint (written before the link goes up): IPv6 on,
# the link-local address from the MAC (EUI-64, what the switch's port security expects), and
# no duplicate address detection (the addresses are unique by construction).
IPV6_SYSCTLS = (("disable_ipv6", "0"), ("addr_gen_mode", "0"), ("accept_dad", "0"))

SIOCETHTOOL = 0x8946
ETHTOOL_GTXCSUM = 0x16
ETHTOOL_STXCSUM = 0x17


class _EthtoolValue(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint32), ("data", ctypes.c_uint32)]


class _IfReq(ctypes.Structure):
    _fields_ = [
        ("ifr_name", ctypes.c_char * 16),
        ("ifr_data", ctypes.c_void_p),
        ("pad", ctypes.c_char * 16),
    ]


def _ethtool(sock: socket.socket, ifname: str, cmd: int, data: int = 0) -> int:
    value = _EthtoolValue(cmd, data)
    req = _IfReq(ifname.encode(), ctypes.cast(ctypes.pointer(value), ctypes.c_void_p))
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, req)
    return int(value.data)


def _set_tx_csum(ifname: str) -> int:
    """Turn TX checksum offload off on ``ifname`` in the caller's namespace; return it after."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        _ethtool(sock, ifname, ETHTOOL_STXCSUM, 0)
        return _ethtool(sock, ifname, ETHTOOL_GTXCSUM)


def switch_port_only(ifname: str) -> None:
    """No IPv6 on the host side of an endpoint's veth (before it goes up): it is an OVS port,
    not an interface of the host.

    Else the kernel gives it a link-local address and routes when it comes up, and on the
    userspace datapath ovs-vswitchd, hearing of those, rebuilds its view of the host's
    addresses, routes and tunnel ports; a VXLAN packet arriving meanwhile is handed to the
    host's kernel instead of being decapsulated (seen: ICMP port unreachable for UDP 4789).
    Measured on the lab, 200 attaches each: 9 and 11 first pings lost with it, 0 to 2 with
    IPv6 off in the host namespaces.
    """
    try:
        with open(f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6", "w") as knob:
            knob.write("1")
    except FileNotFoundError:  # no IPv6 in this kernel or namespace: nothing to turn off
        pass
    except OSError as exc:
        raise LinkError(f"disabling IPv6 on {ifname}: {exc}") from exc


def dual_stack_sysctls(ifname: str) -> None:
    """Turn IPv6 on for ``ifname`` in the caller's namespace, with an EUI-64 link-local address
    and no duplicate address detection (``IPV6_SYSCTLS``; a knob already right is not
    written: a changed ``addr_gen_mode`` on a link that is up would make a new link-local).

    Why no DAD: the global address is the network's prefix plus the endpoint's unique IPv4
    address, the link-local one derives from the MAC, which derives from that IPv4 address,
    so neither can be a duplicate; with DAD each stays "tentative" for about a second after
    the link comes up (the global one unusable as a source: a ``ping -6`` right after the
    runtime was told "ready" would fail; ``python -m bench.dad6``: 1.35 s median).
    ``IFA_F_NODAD`` on the address says the same for the global address in ``ip addr``.
    """
    for knob, value in IPV6_SYSCTLS:
        path = f"/proc/sys/net/ipv6/conf/{ifname}/{knob}"
        try:
            with open(path) as f:
                if f.read().strip() == value:
                    continue
            with open(path, "w") as f:
                f.write(value)
        except FileNotFoundError as exc:
            raise LinkError(f"{ifname}: no IPv6 in this kernel or namespace ({path})") from exc
        except OSError as exc:
            raise LinkError(f"setting {knob} on {ifname}: {exc}") from exc


@contextmanager
def entered_netns(path: str) -> Iterator[None]:
    """Run the block with the calling thread inside the network namespace at ``path``.

    setns(2) moves only the calling thread, so sockets opened in the block live in that
    namespace and the rest of the process is untouched. About 1 ms, against about 8 ms for
    pyroute2's ``IPRoute(netns=...)``, which forks a helper.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
    except OSError:
        os.close(own)
        raise
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {path}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - cannot happen
                err = ctypes.get_errno()
                raise SystemExit(f"cannot return to the agent's namespace: {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(own)


def _ifindex(ifname: str) -> int | None:
    """The index of device ``ifname`` in the calling thread's namespace, or None."""
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        return None


def _wait_link_local(ipr: IPRoute, index: int, timeout: float = 1.0) -> None:
    """Until device ``index`` has a link-local IPv6 address that is not tentative (at most
    ``timeout`` s). The kernel adds it when the link comes up and clears its tentative flag
    from a work queue even without DAD, a moment later: until then a socket cannot bind it.
    Seen in tests/unit/test_netlink_dual.py (2 of 12 runs) once the configuration got faster."""
    deadline = time.monotonic() + timeout
    while True:
        for a in ipr.get_addr(index=index, family=AF_INET6):
            address = a.get_attr("IFA_ADDRESS") or ""
            flags = a.get_attr("IFA_FLAGS") or a["flags"]
            if address.startswith("fe80:") and not flags & IFA_F_TENTATIVE:
                return
        if time.monotonic() >= deadline:
            return
        time.sleep(0.001)


def netns_path(netns: str) -> str:
    """The path of a network namespace given as a name (``/run/netns/<name>``) or a path."""
    if "/" in netns:
        return netns
    if not netns or netns in (".", "..") or "\0" in netns:
        raise InvalidRequest(f"bad network namespace name {netns!r}")
    return os.path.join(NETNS_DIR, netns)


def check_netns(netns: str) -> None:
    """Refuse (before anything is made) a namespace that is not a container's.

    ``netns`` is a name under /run/netns or the path of any network namespace file (CNI's
    ``/proc/PID/ns/net`` or ``/var/run/netns/...``, Docker's sandbox keys), but never the
    agent's own namespace or the init process's (the host's): a veth named ``eth0`` and a
    default route there would replace the host's own. The namespace is told by its inode
    (``st_dev``, ``st_ino``), so no other path or bind mount of the host's namespace passes.
    NotFound if it does not exist, InvalidRequest otherwise.
    """
    path = netns_path(netns)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NotFound(f"network namespace {netns} does not exist") from exc
    except OSError as exc:
        raise InvalidRequest(f"network namespace {netns}: {exc.strerror}") from exc
    try:
        try:
            kind = fcntl.ioctl(fd, NS_GET_NSTYPE)
        except OSError:
            kind = 0
        if kind != CLONE_NEWNET:
            raise InvalidRequest(f"{netns} is not a network namespace")
        st = os.fstat(fd)
    finally:
        os.close(fd)
    for own in HOST_NETNS:
        try:
            host = os.stat(own)
        except OSError:  # no /proc/1 to look at (another pid namespace): the agent's own counts
            continue
        if (st.st_dev, st.st_ino) == (host.st_dev, host.st_ino):
            raise InvalidRequest(
                f"network namespace {netns} is the host's own ({own}): refusing to plug into it"
            )


class LinkOps:
    """Idempotent device verbs in the agent's own namespace and in containers' namespaces."""

    def netns_exists(self, netns: str) -> bool:
        """Whether the network namespace (a name under /run/netns, or a path) exists."""
        return os.path.exists(netns_path(netns))

    def check_netns(self, netns: str) -> None:
        """``check_netns``: NotFound or InvalidRequest unless ``netns`` is a container's."""
        check_netns(netns)

    # -- namespaces ---------------------------------------------------------------------

    def names(self) -> set[str]:
        """The names of the devices in the agent's own namespace (``if_nameindex(3)``: 0.1 ms
        with 200 devices, where a pyroute2 link dump parses for 60 ms)."""
        try:
            return {name for _, name in socket.if_nameindex()}
        except OSError as exc:
            raise LinkError(f"listing devices: {exc}") from exc

    @contextmanager
    def _ipr(self, netns: str | None = None) -> Iterator[IPRoute]:
        if netns is None:
            ipr = IPRoute()
        else:
            path = netns_path(netns)
            if not os.path.exists(path):
                raise NotFound(f"network namespace {netns} does not exist")
            try:
                with entered_netns(path):
                    ipr = IPRoute()
            except OSError as exc:
                raise NotFound(f"cannot enter network namespace {netns}: {exc}") from exc
        try:
            yield ipr
        finally:
            ipr.close()

    @staticmethod
    def _index(ipr: IPRoute, ifname: str) -> int | None:
        found = ipr.link_lookup(ifname=ifname)
        return found[0] if found else None

    def get_link(self, ifname: str, netns: str | None = None) -> LinkInfo | None:
        """The device ``ifname`` in ``netns`` (None: ours), or None if it is not there."""
        with self._ipr(netns) as ipr:
            index = self._index(ipr, ifname)
            if index is None:
                return None
            link = ipr.get_links(index)[0]
            info = link.get_attr("IFLA_LINKINFO")
            return LinkInfo(
                index=index,
                ifname=ifname,
                mac=link.get_attr("IFLA_ADDRESS"),
                mtu=link.get_attr("IFLA_MTU"),
                kind=info.get_attr("IFLA_INFO_KIND") if info else None,
            )

    # -- veths --------------------------------------------------------------------------

    def make_veth(self, host_name: str, peer_name: str, mtu: int = 1450) -> None:
        """Make the veth pair ``host_name``/``peer_name`` here, host side up.

        If the host side exists but its peer is not in this namespace any more (a previous
        attempt moved it away), the pair is deleted and made again.
        """
        try:
            with self._ipr() as ipr:
                host = self._index(ipr, host_name)
                peer = self._index(ipr, peer_name)
                if host is not None and peer is None:
                    ipr.link("del", index=host)
                    host = None
                elif host is None and peer is not None:
                    ipr.link("del", index=peer)
                    peer = None
                if host is None:
                    ipr.link("add", ifname=host_name, kind="veth", peer=peer_name)
                    host = self._index(ipr, host_name)
                switch_port_only(host_name)
                ipr.link("set", index=host, mtu=mtu, state="up")
        except NetlinkError as exc:
            raise LinkError(f"veth {host_name}/{peer_name}: {exc}") from exc

    def make_veth_into(self, host_name: str, peer_name: str, netns: str, mtu: int = 1450) -> None:
        """Make the veth pair with the peer created directly inside ``netns`` under its final
        name, host side up.

        One netlink request instead of make-then-move-then-rename; a leftover host side (from
        a crashed attempt) is deleted first, which takes its peer with it. Only the host side's
        name is looked up here: ``peer_name`` (``eth0``) may well exist in our own namespace.
        InvalidRequest if ``netns`` already has a device ``peer_name``.
        """
        path = netns_path(netns)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise NotFound(f"network namespace {netns} does not exist") from exc
        try:
            with self._ipr() as ipr:
                index = self._index(ipr, host_name)
                if index is not None:
                    ipr.link("del", index=index)
                try:
                    ipr.link(
                        "add",
                        ifname=host_name,
                        kind="veth",
                        mtu=mtu,
                        peer={"ifname": peer_name, "net_ns_fd": fd, "mtu": mtu},
                    )
                except NetlinkError as exc:
                    if exc.code == errno.EEXIST and self._index(ipr, host_name) is None:
                        raise InvalidRequest(
                            f"{netns} already has an interface {peer_name}"
                        ) from exc
                    raise
                index = self._index(ipr, host_name)
                switch_port_only(host_name)
                ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            raise LinkError(f"veth {host_name}/{peer_name} into {netns}: {exc}") from exc
        finally:
            os.close(fd)

    def configure(
        self,
        netns: str,
        current: str,
        ifname: str,
        mac: str,
        address: IPv4Interface,
        mtu: int,
        gateway: IPv4Address | None,
        address6: IPv6Interface | None = None,
        gateway6: IPv6Address | None = None,
    ) -> None:
        """Inside ``netns``: rename ``current`` to ``ifname``, set MAC, address, MTU, up, lo up,
        and a default route via ``gateway``; idempotent.

        Dual stack (``address6``): before the link comes up, IPv6 is turned on for it with an
        EUI-64 link-local address and no DAD (``dual_stack_sysctls``: so the kernel's
        link-local address is the one derived from the MAC set here), the address is added
        with ``IFA_F_NODAD``, and ``::/0`` goes via ``gateway6``.

        The thread stays inside the namespace for the whole sequence, so devices are looked up
        with if_nametoindex(3) instead of netlink requests, and (IPv4 only) MAC, MTU and up go
        in one request: four netlink requests in all, where there were eight (measured on the
        lab host: 6.0 against 10.3 ms, 1.1 against 1.8 ms of CPU, docs/benchmarks.md).
        """
        path = netns_path(netns)
        if not os.path.exists(path):
            raise NotFound(f"network namespace {netns} does not exist")
        entered = False
        try:
            with entered_netns(path):
                entered = True
                ipr = IPRoute()
                try:
                    self._configure_here(
                        ipr, netns, current, ifname, mac, address, mtu, gateway, address6,
                        gateway6,
                    )  # fmt: skip
                finally:
                    ipr.close()
        except NetlinkError as exc:
            raise LinkError(f"configuring {ifname} in {netns}: {exc}") from exc
        except OSError as exc:
            if not entered:  # the namespace went away meanwhile
                raise NotFound(f"cannot enter network namespace {netns}: {exc}") from exc
            raise LinkError(f"configuring {ifname} in {netns}: {exc}") from exc

    def _configure_here(
        self,
        ipr: IPRoute,
        netns: str,
        current: str,
        ifname: str,
        mac: str,
        address: IPv4Interface,
        mtu: int,
        gateway: IPv4Address | None,
        address6: IPv6Interface | None,
        gateway6: IPv6Address | None,
    ) -> None:
        """``configure``'s requests, made from inside the namespace."""
        index = _ifindex(current)
        if index is None:
            raise LinkError(f"device {current} not found in {netns}")
        if current != ifname:
            if _ifindex(ifname) is not None:
                raise InvalidRequest(f"{netns} already has an interface {ifname}")
            ipr.link("set", index=index, state="down")
            ipr.link("set", index=index, ifname=ifname)
        if address6 is None:
            ipr.link("set", index=index, address=mac, mtu=mtu, state="up")
            self._add_address(ipr, index, str(address.ip), address.network.prefixlen)
        else:  # IPv6 set up before the link comes up (module docstring of dual_stack_sysctls)
            ipr.link("set", index=index, address=mac, mtu=mtu)
            self._add_address(ipr, index, str(address.ip), address.network.prefixlen)
            dual_stack_sysctls(ifname)
            self._add_address(ipr, index, str(address6.ip), address6.network.prefixlen, IFA_F_NODAD)
            ipr.link("set", index=index, state="up")
            _wait_link_local(ipr, index)
        lo = _ifindex("lo")
        if lo is not None:
            ipr.link("set", index=lo, state="up")
        if gateway is not None:
            ipr.route("replace", dst="0.0.0.0/0", gateway=str(gateway), oif=index)
        if address6 is not None and gateway6 is not None:
            ipr.route("replace", dst="::/0", gateway=str(gateway6), oif=index, family=AF_INET6)

    @staticmethod
    def _add_address(ipr: IPRoute, index: int, ip: str, prefixlen: int, flags: int = 0) -> None:
        """Add an address to device ``index``; one it already has is left as it is."""
        try:
            if flags:
                ipr.addr("add", index=index, address=ip, prefixlen=prefixlen, flags=flags)
            else:
                ipr.addr("add", index=index, address=ip, prefixlen=prefixlen)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def disable_tx_offload(self, ifname: str, netns: str | None = None) -> None:
        """``ethtool -K <ifname> tx off`` (in ``netns``), then check that it took effect.

        Done with the SIOCETHTOOL ioctl (ETHTOOL_STXCSUM, then ETHTOOL_GTXCSUM to check) from
        a socket opened inside the namespace: a fraction of a millisecond, where two
        ``nsenter ethtool`` processes cost several.
        """
        try:
            if netns is None:
                tx = _set_tx_csum(ifname)
            else:
                with entered_netns(netns_path(netns)):
                    tx = _set_tx_csum(ifname)
        except OSError as exc:
            raise LinkError(f"ethtool tx off on {ifname}: {exc}") from exc
        if tx:
            raise LinkError(f"TX checksum offload still on for {ifname}")

    def delete(self, ifname: str, netns: str | None = None) -> None:
        """Delete device ``ifname`` (a veth takes its peer with it); a no-op if absent."""
        try:
            with self._ipr(netns) as ipr:
                index = self._index(ipr, ifname)
                if index is not None:
                    ipr.link("del", index=index)
        except NotFound:
            return
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise LinkError(f"deleting {ifname}: {exc}") from exc

    def ipv6_addresses(self, ifname: str, netns: str | None = None) -> list[IPv6Interface]:
        """The IPv6 addresses of ``ifname`` in ``netns`` (the link-local one too); [] if it
        is absent."""
        try:
            with self._ipr(netns) as ipr:
                index = self._index(ipr, ifname)
                if index is None:
                    return []
                return [
                    IPv6Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                    for a in ipr.get_addr(index=index, family=AF_INET6)
                ]
        except NetlinkError as exc:
            raise LinkError(f"addresses of {ifname} in {netns}: {exc}") from exc

    def remove_address6(self, ifname: str, netns: str | None, address: IPv6Address) -> None:
        """Take ``address`` (whatever its prefix length) off ``ifname`` in ``netns``, and the
        default route via a gateway of its prefix; a no-op if it is not there."""
        try:
            with self._ipr(netns) as ipr:
                index = self._index(ipr, ifname)
                if index is None:
                    return
                for a in ipr.get_addr(index=index, family=AF_INET6):
                    if IPv6Address(a.get_attr("IFA_ADDRESS")) != address:
                        continue
                    prefix = IPv6Interface(f"{address}/{a['prefixlen']}").network
                    ipr.addr("del", index=index, address=str(address), prefixlen=a["prefixlen"])
                    for r in ipr.get_routes(family=AF_INET6, dst_len=0, oif=index):
                        via = r.get_attr("RTA_GATEWAY")
                        if via is not None and IPv6Address(via) in prefix:
                            ipr.route("del", dst="::/0", gateway=via, oif=index, family=AF_INET6)
        except NetlinkError as exc:
            if exc.code not in (errno.EADDRNOTAVAIL, errno.ESRCH, errno.ENODEV):
                raise LinkError(f"removing {address} from {ifname} in {netns}: {exc}") from exc

    def ipv4_addresses(self, ifname: str, netns: str | None = None) -> list[IPv4Interface]:
        """The IPv4 addresses of ``ifname`` in ``netns``; [] if it is absent."""
        try:
            with self._ipr(netns) as ipr:
                index = self._index(ipr, ifname)
                if index is None:
                    return []
                return [
                    IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                    for a in ipr.get_addr(index=index, family=2)
                ]
        except NetlinkError as exc:
            raise LinkError(f"addresses of {ifname} in {netns}: {exc}") from exc
