"""Lab names and ports for one test module, shifted by ``VXTEST_SLOT``.

Each lab test module has its own prefix, underlay and ports (its block in ``PORT_MODULES``),
so modules never collide within one run. Two checkouts running the same module at once (two
developers on one machine, a worktree per change) would: ``VXTEST_SLOT=N`` (1..9) moves every
module of that run to its own names, underlays and ports. Unset or 0 keeps the names the
modules declare. tests/unit/test_slots.py checks that nothing overlaps in slots 0..9.
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


# The lab modules that listen on fixed TCP ports, each owning the block of its index here:
# append a new module at the end (an index never moves). A module's ports come from this one
# table, so two modules, or two slots, cannot be handed the same port (tests/unit/test_slots.py
# checks it for every module and slot, and that each name here is claimed by one file only).
PORT_MODULES = (
    "test_overlay",
    "test_dashboard",
    "test_dashboard_cluster",
    "test_cni",
    "test_docker",
    "test_bundles_ovs",
    "test_dual_stack_lab",
    "test_external",
    "test_ha",
    "test_metrics_lab",
    "test_openflow_fuzz",
    "test_policy_lab",
    "test_portsec",
    "test_tls_lab",
    "test_trace_lab",
)
PORT_BASE = 20000  # slots 0..9 use 20000..29999: below Linux's ephemeral range (32768..)
PORTS_PER_MODULE = 10
PORTS_PER_SLOT = 1000  # room for 100 modules a slot


def ports(module: str, count: int) -> list[int]:
    """``count`` TCP ports of ``module`` (a name in ``PORT_MODULES``) in this slot: its own
    block of ``PORTS_PER_MODULE``, which no other module or slot is given."""
    if module not in PORT_MODULES:
        raise ValueError(f"{module!r} has no ports: add it at the end of slots.PORT_MODULES")
    if not 1 <= count <= PORTS_PER_MODULE:
        raise ValueError(f"{module}: {count} ports asked, a module has {PORTS_PER_MODULE}")
    first = PORT_BASE + slot() * PORTS_PER_SLOT + PORT_MODULES.index(module) * PORTS_PER_MODULE
    return list(range(first, first + count))


def state_dir(base: str) -> str:
    """A state directory per slot."""
    n = slot()
    return base if n == 0 else f"{base}-{n}"
