"""Which Docker network an IPAM pool id belongs to, kept across agent and engine restarts.

Docker's remote IPAM protocol never names the network: ``RequestPool`` carries the subnet
and ``--ipam-opt`` values, ``RequestAddress`` only the pool id; the network driver's
``CreateNetwork`` carries the network id and subnet but not the pool id, and the engine's
``GET /networks/{id}`` shows neither (libnetwork keeps the pool id in its own store). With
two Docker networks of the same subnet on one host, the pool id is the only thing that tells
a container's ``RequestAddress`` which of them it is for. So:

- ``RequestPool`` hands out a fresh id per call (``vxplane:<cidr>:<random tag>``).
- libnetwork's ``NewNetwork`` calls, in one goroutine, ``RequestPool``, ``RequestAddress``
  for the gateway with that pool id, then the driver's ``CreateNetwork`` (or ``ReleasePool``
  when a step fails). ``CreateNetwork`` is paired with the pool of its subnet that awaits
  it. To make that pairing exact when two same-subnet networks are created at once, a
  ``RequestPool`` waits (up to ``settle`` seconds) while another pool of the same subnet
  awaits its ``CreateNetwork``: at most one pool per subnet is ever unpaired and recent.
- The pairs are written to a JSON file (atomically) and read back when the agent starts.
  An engine restart changes nothing: with ``RequiresRequestReplay`` false libnetwork asks
  for no pool again and calls no ``CreateNetwork`` for remote drivers; the pool ids it
  stored come back in later ``RequestAddress``/``ReleasePool`` calls.

A pool id this table does not know (the file lost, say with ``/run`` after a reboot) is
resolved by the driver from the engine's networks (see ``DockerDriver._network_of_pool``)
and then learned.

With ``--ipv6`` libnetwork asks for the IPv4 pool and its gateway, then for the IPv6 pool
and its gateway, then calls ``CreateNetwork``; the IPv6 pool is paired like the IPv4 one (by
its subnet). The IPv6 gateway is the prefix plus the IPv4 gateway's low 32 bits, so the
IPv4 gateway handed out is noted on its pool (``gateway``) for the IPv6 gateway's request
that follows (``gateways_awaiting``).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from hostagent.runtimes.docker import proto

log = logging.getLogger("hostagent.docker")


Subnet = IPv4Network | IPv6Network


@dataclass
class Pool:
    subnet: Subnet
    network_id: str | None = None  # the Docker network, once paired
    issued: float = 0.0  # monotonic time of RequestPool (0: read from the file)
    paired: float = 0.0  # wall time of the pairing
    gateway: IPv4Address | None = None  # the IPv4 gateway handed out, while unpaired


class PoolTable:
    """Pool id -> Docker network id for one engine; thread-safe; kept in ``path`` (if any)."""

    def __init__(self, path: str | None, settle: float = 10.0) -> None:
        self.path = path
        self.settle = settle
        self._cond = threading.Condition()
        self._pools: dict[str, Pool] = {}
        self._load()

    # -- the file ---------------------------------------------------------------------

    def _load(self) -> None:
        if not self.path:
            return
        try:
            with open(self.path) as f:
                doc = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("docker pool table %s unreadable, starting empty: %r", self.path, exc)
            return
        entries = doc.get("pools") if isinstance(doc, dict) else None
        for pool_id, entry in (entries or {}).items():
            try:
                ref = proto.parse_pool_id(pool_id)
                network_id, paired = str(entry["network"]), float(entry.get("paired", 0))
            except (proto.ProtocolError, KeyError, TypeError, ValueError):
                log.warning("docker pool table %s: entry %r ignored", self.path, pool_id)
                continue
            self._pools[pool_id] = Pool(ref.pool, network_id, 0.0, paired)

    def _save(self) -> None:
        """Write the paired pools (the caller holds the lock)."""
        if not self.path:
            return
        doc = {
            "pools": {
                pid: {"subnet": str(p.subnet), "network": p.network_id, "paired": p.paired}
                for pid, p in sorted(self._pools.items())
                if p.network_id
            }
        }
        tmp = f"{self.path}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)  # a leftover tmp keeps its own mode through O_CREAT
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("docker pool table %s not written: %r", self.path, exc)

    # -- the calls --------------------------------------------------------------------

    def _awaiting(self, subnet: Subnet, now: float) -> list[str]:
        """Pools of ``subnet`` issued less than ``settle`` s ago, not yet paired."""
        return [
            pid
            for pid, p in self._pools.items()
            if p.subnet == subnet and p.network_id is None and now - p.issued < self.settle
        ]

    def request(self, subnet: Subnet) -> str:
        """A new pool id for ``subnet`` (``RequestPool``), once no other pool of the subnet
        awaits its ``CreateNetwork`` (or ``settle`` s passed)."""
        with self._cond:
            while True:
                now = time.monotonic()
                waiting = self._awaiting(subnet, now)
                if not waiting:
                    break
                oldest = min(self._pools[pid].issued for pid in waiting)
                self._cond.wait(timeout=oldest + self.settle - now)
            pool_id = proto.pool_id(subnet, secrets.token_hex(6))
            self._pools[pool_id] = Pool(subnet, None, time.monotonic())
            return pool_id

    def created(self, subnet: Subnet, network_id: str) -> str | None:
        """``CreateNetwork`` of ``network_id``: pair it with the pool of its subnet that awaits
        it; returns that pool id (None if no pool of ours awaits: another IPAM driver)."""
        with self._cond:
            for pid, p in self._pools.items():
                if p.network_id == network_id and p.subnet.version == subnet.version:
                    return pid  # CreateNetwork again (engine retries): already paired
            waiting = self._awaiting(subnet, time.monotonic())
            if not waiting:
                return None
            pool_id = max(waiting, key=lambda pid: self._pools[pid].issued)
            self._pools[pool_id].network_id = network_id
            self._pools[pool_id].paired = time.time()
            self._save()
            self._cond.notify_all()
        log.info("docker pool %s -> network %s", pool_id, network_id[:12])
        return pool_id

    def gateway(self, pool_id: str, address: IPv4Address) -> None:
        """The IPv4 gateway handed out for a pool that awaits its ``CreateNetwork``."""
        with self._cond:
            p = self._pools.get(pool_id)
            if p is not None and p.network_id is None:
                p.gateway = address

    def gateways_awaiting(self) -> set[IPv4Address]:
        """The IPv4 gateways of the pools that await their ``CreateNetwork`` (issued less
        than ``settle`` s ago): one, when a single network is being created."""
        now = time.monotonic()
        with self._cond:
            return {
                p.gateway
                for p in self._pools.values()
                if p.gateway is not None and p.network_id is None and now - p.issued < self.settle
            }

    def learn(self, pool_id: str, network_id: str) -> None:
        """Record a pairing found otherwise (an id this table did not know)."""
        ref = proto.parse_pool_id(pool_id)
        with self._cond:
            self._pools[pool_id] = Pool(ref.pool, network_id, 0.0, time.time())
            self._save()
        log.info("docker pool %s -> network %s (learned)", pool_id, network_id[:12])

    def released(self, pool_id: str) -> None:
        """``ReleasePool``."""
        with self._cond:
            if self._pools.pop(pool_id, None) is not None:
                self._save()
            self._cond.notify_all()

    def network_of(self, pool_id: str) -> str | None:
        """The Docker network id of a pool, if paired."""
        with self._cond:
            p = self._pools.get(pool_id)
            return p.network_id if p else None

    def awaiting(self, pool_id: str) -> bool:
        """True while the pool is being created (issued by this process, not yet paired)."""
        with self._cond:
            p = self._pools.get(pool_id)
            return bool(p and p.network_id is None and p.issued)

    def claimed(self, except_pool: str = "", version: int = 4) -> set[str]:
        """Docker network ids paired with some pool of IP ``version`` (other than
        ``except_pool``)."""
        with self._cond:
            return {
                p.network_id
                for pid, p in self._pools.items()
                if p.network_id and pid != except_pool and p.subnet.version == version
            }

    def prune(self, network_ids: set[str], older_than: float = 60.0) -> list[str]:
        """Forget pairs with networks the engine no longer has (a ``docker network rm`` while
        the agent was down); pairs younger than ``older_than`` s are kept (the network may
        not be in the engine's store yet)."""
        now = time.time()
        with self._cond:
            gone = [
                pid
                for pid, p in self._pools.items()
                if p.network_id and p.network_id not in network_ids and now - p.paired > older_than
            ]
            for pid in gone:
                del self._pools[pid]
            if gone:
                self._save()
        return gone
