"""LinkOps: the agent's idempotent verbs on network devices (veths, namespaces) via pyroute2.

Device names derive from the endpoint's identity (``network/name``), so a retry finds what a
crashed attempt made: the host side is ``vx`` + 11 hex digits of a hash, the peer ``vp`` + the
same digits until it is renamed (``eth0``) inside the container's namespace.

With the userspace datapath ovs-vswitchd reads the host side through a packet socket and never
fills in checksums the container's kernel left to the NIC: TX checksum offload must be off on
the container side, or TCP fails while ping works.
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from hostagent.errors import InvalidRequest, LinkError, NotFound

NETNS_DIR = "/run/netns"


def device_names(network: str, name: str) -> tuple[str, str]:
    """Host-side and peer names of the veth of endpoint ``name`` on ``network``."""
    digest = hashlib.sha256(f"{network}/{name}".encode()).hexdigest()[:11]
    return f"vx{digest}", f"vp{digest}"


def netns_path(netns: str) -> str:
    """The path of a network namespace given as a name (``/run/netns/<name>``) or a path."""
    if "/" in netns:
        return netns
    if not netns or netns in (".", "..") or "\0" in netns:
        raise InvalidRequest(f"bad network namespace name {netns!r}")
    return os.path.join(NETNS_DIR, netns)


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What we need to know of a device inside a namespace."""

    index: int
    ifname: str
    mac: str
    mtu: int
    kind: str | None


class LinkOps:
    """Idempotent device verbs in the agent's own namespace and in containers' namespaces."""

    # -- namespaces ---------------------------------------------------------------------

    @contextmanager
    def _ipr(self, netns: str | None = None) -> Iterator[IPRoute]:
        if netns is None:
            ipr = IPRoute()
        else:
            path = netns_path(netns)
            if not os.path.exists(path):
                raise NotFound(f"network namespace {netns} does not exist")
            try:
                ipr = IPRoute(netns=path, flags=0)
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

    def ensure_veth(self, host_name: str, peer_name: str, mtu: int = 1450) -> None:
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
                ipr.link("set", index=host, mtu=mtu, state="up")
        except NetlinkError as exc:
            raise LinkError(f"veth {host_name}/{peer_name}: {exc}") from exc

    def move_to_netns(self, ifname: str, netns: str) -> None:
        """Move our device ``ifname`` into ``netns`` (name or path)."""
        path = netns_path(netns)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise NotFound(f"network namespace {netns} does not exist") from exc
        try:
            with self._ipr() as ipr:
                index = self._index(ipr, ifname)
                if index is None:
                    raise LinkError(f"device {ifname} not found")
                ipr.link("set", index=index, net_ns_fd=fd)
        except NetlinkError as exc:
            raise LinkError(f"moving {ifname} to {netns}: {exc}") from exc
        finally:
            os.close(fd)

    def configure(
        self,
        netns: str,
        current: str,
        ifname: str,
        mac: str,
        ip: IPv4Address,
        prefixlen: int,
        mtu: int,
        gateway: IPv4Address | None,
    ) -> None:
        """Inside ``netns``: rename ``current`` to ``ifname``, set MAC, address, MTU, up, lo up,
        and a default route via ``gateway``."""
        try:
            with self._ipr(netns) as ipr:
                index = self._index(ipr, current)
                if index is None:
                    raise LinkError(f"device {current} not found in {netns}")
                if current != ifname:
                    if self._index(ipr, ifname) is not None:
                        raise InvalidRequest(f"{netns} already has an interface {ifname}")
                    ipr.link("set", index=index, state="down")
                    ipr.link("set", index=index, ifname=ifname)
                ipr.link("set", index=index, address=mac, mtu=mtu)
                try:
                    ipr.addr("add", index=index, address=str(ip), prefixlen=prefixlen)
                except NetlinkError as exc:
                    if exc.code != errno.EEXIST:
                        raise
                ipr.link("set", index=index, state="up")
                lo = self._index(ipr, "lo")
                if lo is not None:
                    ipr.link("set", index=lo, state="up")
                if gateway is not None:
                    ipr.route("replace", dst="0.0.0.0/0", gateway=str(gateway), oif=index)
        except NetlinkError as exc:
            raise LinkError(f"configuring {ifname} in {netns}: {exc}") from exc

    def disable_tx_offload(self, ifname: str, netns: str | None = None) -> None:
        """``ethtool -K <ifname> tx off`` (in ``netns``), then check that it took effect."""
        prefix = ["nsenter", f"--net={netns_path(netns)}"] if netns else []
        for argv, what in (
            ([*prefix, "ethtool", "-K", ifname, "tx", "off"], "set"),
            ([*prefix, "ethtool", "-k", ifname], "check"),
        ):
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise LinkError(f"ethtool on {ifname}: {exc}") from exc
            if done.returncode != 0:
                raise LinkError(f"ethtool {what} on {ifname}: {done.stderr.strip()}")
        if "tx-checksumming: off" not in done.stdout:
            raise LinkError(f"TX checksum offload still on for {ifname}")

    def delete_if_exists(self, ifname: str, netns: str | None = None) -> None:
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
