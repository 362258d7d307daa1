"""Prometheus metrics of one host's agent: plug latency by step, OVS operation latency,
reconcile repairs (served by ``vxplane agent --metrics ADDR``; the list is in docs/metrics.md).

One ``CollectorRegistry`` per agent (never the process-global one). The plug sequence reports
its stages (``Plugger`` calls ``plugged``), ``TimedOvs`` wraps the OVS edge and times every
verb that talks to ovsdb-server or waits for ovs-vswitchd (reads from the local replica are
memory lookups and are not timed), and reconciliation counts each repair it carries out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hostagent.edges import BridgeSpec, OvsEdge, PortRecord


class AgentState(Protocol):
    """What the scrape-time gauges read of the agent (``hostagent.agent.Agent``)."""

    registered: bool
    tunnel_port: int | None


BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class _AgentState(Collector):
    """Gauges read at scrape time from the agent."""

    def __init__(self, agent: AgentState) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        registered = GaugeMetricFamily(
            "vxplane_agent_registered", "1 while the host is registered at the controller"
        )
        registered.add_metric([], 1 if self.agent.registered else 0)
        yield registered
        bridge = GaugeMetricFamily(
            "vxplane_agent_bridge_ready", "1 once br-int and its tunnel port are set up"
        )
        bridge.add_metric([], 1 if self.agent.tunnel_port is not None else 0)
        yield bridge


class AgentMetrics:
    """The agent's registry and its instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.plug_step = Histogram(
            "vxplane_agent_plug_step_seconds",
            "successful plugs, by step (veth, bind, configure, port)",
            ["step"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.plug = Histogram(
            "vxplane_agent_plug_seconds",
            "successful plugs, whole (the endpoint ready at the controller, its port up)",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.plug_failures = Counter(
            "vxplane_agent_plug_failures", "plugs that failed (and were undone)",
            registry=self.registry,
        )  # fmt: skip
        self.ovs_op = Histogram(
            "vxplane_agent_ovs_op_seconds",
            "OVS verbs that reach ovsdb-server or wait for ovs-vswitchd, by verb",
            ["op"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.ovs_errors = Counter(
            "vxplane_agent_ovs_errors", "OVS verbs that raised, by verb", ["op"],
            registry=self.registry,
        )  # fmt: skip
        self.reconciles = Counter(
            "vxplane_agent_reconciles", "reconciliations of local ports with the controller",
            registry=self.registry,
        )  # fmt: skip
        self.repairs = Counter(
            "vxplane_agent_reconcile_repairs",
            "what reconciliation found to repair, by action (recreate, bind, unbind, "
            "remove_local, drop_stale, conflict)",
            ["action"],
            registry=self.registry,
        )

    def watch(self, agent: AgentState) -> None:
        """Also report ``agent``'s registration and bridge state at scrape time."""
        self.registry.register(_AgentState(agent))

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in the registry."""
        return generate_latest(self.registry)

    def plugged(self, laps: list[tuple[str, float]], total: float) -> None:
        """A plug succeeded; ``laps`` are its (step, seconds)."""
        for step, seconds in laps:
            self.plug_step.labels(step).observe(seconds)
        self.plug.observe(total)

    def repaired(self, actions: list[object]) -> None:
        """One reconciliation ran and planned ``actions``."""
        self.reconciles.inc()
        for action in actions:
            self.repairs.labels(_snake(type(action).__name__)).inc()

    @contextmanager
    def timed(self, op: str) -> Iterator[None]:
        """Time one OVS verb (its failures counted too)."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.ovs_errors.labels(op).inc()
            raise
        finally:
            self.ovs_op.labels(op).observe(time.perf_counter() - start)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class TimedOvs:
    """An ``OvsEdge`` that times the verbs of the one it wraps (``AgentMetrics.ovs_op``)."""

    def __init__(self, inner: OvsEdge, metrics: AgentMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @property
    def on_port_down(self) -> Callable[[str], None] | None:
        return self.inner.on_port_down

    @on_port_down.setter
    def on_port_down(self, callback: Callable[[str], None] | None) -> None:
        self.inner.on_port_down = callback

    def ensure_bridge(self, spec: BridgeSpec) -> None:
        with self.metrics.timed("ensure_bridge"):
            self.inner.ensure_bridge(spec)

    def controllers(self, bridge: str) -> list[str]:
        return self.inner.controllers(bridge)

    def set_controllers(self, bridge: str, targets: Sequence[str]) -> None:
        with self.metrics.timed("set_controllers"):
            self.inner.set_controllers(bridge, targets)

    def bridge_dpid(self, name: str) -> int:
        with self.metrics.timed("bridge_dpid"):
            return self.inner.bridge_dpid(name)

    def bridge_ids(self, name: str) -> dict[str, str]:
        return self.inner.bridge_ids(name)

    def set_bridge_ids(self, name: str, external_ids: Mapping[str, str]) -> None:
        with self.metrics.timed("set_bridge_ids"):
            self.inner.set_bridge_ids(name, external_ids)

    def add_port(
        self,
        bridge: str,
        name: str,
        external_ids: Mapping[str, str],
        ofport_request: int | None = None,
    ) -> None:
        with self.metrics.timed("add_port"):
            self.inner.add_port(bridge, name, external_ids, ofport_request)

    def add_internal_port(self, bridge: str, name: str) -> None:
        with self.metrics.timed("add_internal_port"):
            self.inner.add_internal_port(bridge, name)

    def wait_ofport(self, name: str, timeout: float | None = None) -> int:
        with self.metrics.timed("wait_ofport"):
            return self.inner.wait_ofport(name, timeout)

    def set_port_ids(self, name: str, external_ids: Mapping[str, str]) -> None:
        with self.metrics.timed("set_port_ids"):
            self.inner.set_port_ids(name, external_ids)

    def delete_port(self, bridge: str, name: str) -> None:
        with self.metrics.timed("delete_port"):
            self.inner.delete_port(bridge, name)

    def ports(self, bridge: str) -> list[PortRecord]:
        return self.inner.ports(bridge)

    def max_ofport(self, bridge: str) -> int:
        return self.inner.max_ofport(bridge)

    def close(self) -> None:
        self.inner.close()
