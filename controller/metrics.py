"""Prometheus metrics of the controller (``GET /metrics``; the list is in docs/metrics.md).

One ``CollectorRegistry`` per app, never the process-global one, so that tests building many
apps in one process do not collide. What the engine and the database already know (switches,
their applied revision and flows, endpoints by state) is read when Prometheus scrapes; what
happens in between (API requests, attach-to-ready, engine passes, database errors) is counted
where it happens:

- ``ApiLatency``, an ASGI middleware, times every request to its first response byte and
  labels it with the matched route's *template* (``/api/v1/networks/{name}``), never the raw
  path, so the label set stays bounded; anything no route matched is ``<unmatched>``.
- the bind route observes attach-to-ready (``observe_attach``);
- the engine calls ``engine_pass.observe`` after each pass (``Engine.on_pass``, wired by
  ``controller.server``);
- ``watch_database`` counts every error the database driver raises, from any thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event, func, select
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controller.db import repo
from controller.db.models import EndpointRow
from controller.db.policies import policy_networks
from controller.model import EndpointState
from controller.policystats import PolicyStats, policy_stats
from controller.sync import FlowSync
from vxcommon import tpoints

log = logging.getLogger(__name__)

# Seconds. The attach path is milliseconds when all is well and up to ``ready_timeout`` when
# a switch lags; API reads are sub-millisecond to tens of ms.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
UNMATCHED = "<unmatched>"
# What every Prometheus reads (prometheus-client 0.2x also offers 1.0.0, which old ones do not).
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _StateCollector(Collector):
    """Gauges read at scrape time from the flow engine and the database."""

    def __init__(self, sync: FlowSync, sessions: Callable[[], Session]) -> None:
        self.sync = sync
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        wanted: int | None = None
        states: dict[str, int] | None = None
        policies: list[PolicyStats] = []
        try:
            with self.sessions() as session:
                wanted = repo.current_revision(session)
                query = select(EndpointRow.state, func.count()).group_by(EndpointRow.state)
                states = {str(state): int(n) for state, n in session.execute(query)}
                policies = [policy_stats(n, eps) for n, eps in policy_networks(session)]
        except SQLAlchemyError as exc:  # counted by watch_database; the engine's part stands
            log.warning("metrics: database unreadable: %s", exc)
        switches = self.sync.switches()
        connected = GaugeMetricFamily(
            "vxplane_switches_connected", "switches of registered hosts connected now"
        )
        connected.add_metric([], sum(1 for s in switches if s.connected))
        yield connected
        labels = ["host", "dpid"]
        up = GaugeMetricFamily(
            "vxplane_switch_connected", "1 if the host's switch is connected, else 0", labels=labels
        )
        applied = GaugeMetricFamily(
            "vxplane_switch_applied_revision",
            "the intent revision the switch confirmed with a barrier",
            labels=labels,
        )
        flows = GaugeMetricFamily(
            "vxplane_switch_flows",
            "flows the controller holds installed on the switch",
            labels=labels,
        )
        rejected = GaugeMetricFamily(
            "vxplane_switch_rejected_flows",
            "flows the switch refused, held back and retried with backoff",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "vxplane_switch_revision_lag",
            "wanted (database) revision minus the switch's applied revision",
            labels=labels,
        )
        dumps = GaugeMetricFamily(
            "vxplane_switch_flow_dumps",
            "switches whose flow dump is queued (waiting for a dump slot) or under way",
            labels=["state"],
        )
        for state in ("queued", "under_way"):
            dumps.add_metric([state], sum(1 for s in switches if s.flow_dump == state))
        yield dumps
        for s in switches:
            key = [s.host or "", f"{s.dpid:016x}"]
            up.add_metric(key, 1 if s.connected else 0)
            applied.add_metric(key, s.applied_revision)
            flows.add_metric(key, s.flow_count)
            rejected.add_metric(key, s.rejected_flows)
            if wanted is not None:
                lag.add_metric(key, max(0, wanted - s.applied_revision))
        yield from (up, applied, flows, rejected)
        if wanted is None or states is None:
            return
        yield lag
        revision = GaugeMetricFamily("vxplane_intent_revision", "the database's intent revision")
        revision.add_metric([], wanted)
        yield revision
        endpoints = GaugeMetricFamily(
            "vxplane_endpoints", "endpoints by state (reserved, pending, ready)", labels=["state"]
        )
        for state in EndpointState:
            endpoints.add_metric([state.value], states.get(state.value, 0))
        yield endpoints
        yield from _policy_families(policies)


def _policy_families(stats: list[PolicyStats]) -> Iterator[Metric]:
    """The policy gauges (``controller.policystats``): networks with policies only."""
    flows = GaugeMetricFamily(
        "vxplane_policy_flows",
        "policy-stage flows of the network on all switches (desired, from the intent)",
        labels=["network"],
    )
    rule_flows = GaugeMetricFamily(
        "vxplane_policy_rule_flows",
        "flows carrying the policy's rules on all switches (a shared clause flow counts for each)",
        labels=["network", "policy"],
    )
    selected = GaugeMetricFamily(
        "vxplane_policy_selected_endpoints",
        "bound endpoints the policy's selector picks",
        labels=["network", "policy"],
    )
    for st in stats:
        flows.add_metric([st.network], st.flows)
        for name, n in st.rule_flows.items():
            rule_flows.add_metric([st.network, name], n)
        for name, n in st.selected.items():
            selected.add_metric([st.network, name], n)
    yield from (flows, rule_flows, selected)


class ControllerMetrics:
    """The app's registry and the instruments the API and the engine feed."""

    def __init__(self, sync: FlowSync, sessions: Callable[[], Session]) -> None:
        self.registry = CollectorRegistry()
        self.api_request = Histogram(
            "vxplane_api_request_seconds",
            "API requests: time to the first byte of the answer, by route template",
            ["method", "route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.attach_ready = Histogram(
            "vxplane_attach_ready_seconds",
            "binds with wait_ready: from the request's arrival to every switch confirming",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.attach_not_ready = Counter(
            "vxplane_attach_not_ready",
            "binds with wait_ready answered still pending (the wait ran out)",
            registry=self.registry,
        )
        self.engine_pass = Histogram(
            "vxplane_engine_pass_seconds",
            "flow engine passes: snapshot to every switch's batch sent",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.database_errors = Counter(
            "vxplane_database_errors",
            "errors raised by the database driver, by SQLAlchemy exception class",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(sync, sessions))

    def render(self) -> bytes:
        """The Prometheus text exposition of everything in the registry."""
        return generate_latest(self.registry)

    def observe_attach(self, started: float, was_pending: bool, ready: bool) -> None:
        """A bind that waited: how long until ready, or that it did not get there."""
        if not was_pending:
            return
        if ready:
            self.attach_ready.observe(time.perf_counter() - started)
        else:
            self.attach_not_ready.inc()

    def watch_database(self, engine: Engine) -> Callable[[], None]:
        """Count the driver errors of ``engine``'s connections; returns the unhook."""

        def counted(context: ExceptionContext) -> None:
            kind = type(context.sqlalchemy_exception or context.original_exception).__name__
            self.database_errors.labels(kind).inc()

        event.listen(engine, "handle_error", counted)
        return lambda: event.remove(engine, "handle_error", counted)


class ApiLatency:
    """ASGI middleware: ``vxplane_api_request_seconds`` by method, route template, status."""

    def __init__(self, app: ASGIApp, metrics: ControllerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        if tpoints.ON and scope["path"].endswith("/binding"):  # the attach path's timeline
            tpoints.mark("c_asgi", scope["path"].rsplit("/", 2)[-2])
        seen: list[int] = []

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start" and not seen:
                seen.append(message["status"])
                self._observe(scope, message["status"], start)
            await send(message)

        try:
            await self.app(scope, receive, timed)
        finally:
            if not seen:  # failed before answering: the server answers 500
                self._observe(scope, 500, start)

    def _observe(self, scope: Scope, status: int, start: float) -> None:
        route: Any = scope.get("route")
        template = getattr(route, "path", None)
        if not isinstance(template, str):
            template = UNMATCHED
        method = scope["method"] if scope["method"] in METHODS else "other"
        self.metrics.api_request.labels(method, template, str(status)).observe(
            time.perf_counter() - start
        )
