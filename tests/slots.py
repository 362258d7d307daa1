"""Lab names and ports for one test module, shifted by ``VXTEST_SLOT``.

Each lab test module has its own prefix, underlay and ports, so modules never collide within
one run. Two checkouts running the same module at once (two developers on one machine, a
worktree per change) would: ``VXTEST_SLOT=N`` (1..9) moves every module of that run to its
own names, underlays and ports. Unset or 0 keeps the names the modules declare.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Network


def slot() -> int:
    """``VXTEST_SLOT`` (0..9), 0 when unset."""
    value = int(os.environ.get("VXTEST_SLOT", "0") or 0)
    if not 0 <= value <= 9:
        raise ValueError(f"VXTEST_SLOT={value}: expected 0..9")
    return value


def prefix(base: str) -> str:
    """``vxt-`` -> ``vxt3-`` in slot 3 (the lab allows 9 characters)."""
    n = slot()
    return base if n == 0 else f"{base.rstrip('-')}{n}-"


def underlay(base: str) -> str:
    """A /24 in 198.18.0.0/15, moved by 32 /24s per slot (up into 198.19.x)."""
    n = slot()
    net = IPv4Network(base)
    return str(IPv4Network((int(net.network_address) + n * 32 * 256, net.prefixlen)))


def port(base: int) -> int:
    """A TCP port moved by 100 per slot."""
    return base + 100 * slot()


def state_dir(base: str) -> str:
    """A state directory per slot."""
    n = slot()
    return base if n == 0 else f"{base}-{n}"
