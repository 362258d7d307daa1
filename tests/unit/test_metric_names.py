"""The metric names in docs/metrics.md and in the Grafana dashboard are the ones the controller
and the agent really expose (read from their registries, not from a list kept by hand)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.db import migrate
from controller.db.session import make_engine, make_session_factory
from controller.metrics import ControllerMetrics
from controller.sync import NullSync, SwitchStatus
from hostagent.metrics import AgentMetrics
from tests.unit.agentfakes import FakeHost

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\bvxplane_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


class OneSwitch(NullSync):
    def switches(self) -> list[SwitchStatus]:
        return [SwitchStatus(1, True, "198.18.0.1:1", 1, 3, host="h1")]


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every family as exposed (counters with their ``_total``), controller and agent."""
    url = f"sqlite:///{tmp_path_factory.mktemp('names')}/vx.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    controller = ControllerMetrics(OneSwitch(), make_session_factory(engine))
    controller.api_request.labels("GET", "/healthz", "200")  # labelled families show once used
    agent = AgentMetrics()
    agent.watch(FakeHost().agent())
    agent.plug_step.labels("veth")
    agent.ovs_op.labels("add_port")
    agent.ovs_errors.labels("add_port")
    agent.repairs.labels("bind")
    controller.database_errors.labels("OperationalError")
    names = set()
    for text in (controller.render(), agent.render()):
        for family in text_string_to_metric_families(text.decode()):
            if family.name.endswith("_created"):  # the client's start time of a counter
                continue
            names.add(family.name + ("_total" if family.type == "counter" else ""))
    engine.dispose()
    return names


def test_docs_list_every_metric_and_nothing_else(exposed: set[str]) -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    listed = set(re.findall(r"^\| `(vxplane_[a-z0-9_]+)`", text, re.M))
    assert exposed - listed == set(), "exposed but not in docs/metrics.md"
    assert listed - exposed == set(), "in docs/metrics.md but not exposed"


def test_the_dashboard_queries_only_exposed_metrics(exposed: set[str]) -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana" / "vxplane.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in NAME.findall(target["expr"])
    }
    bases = {n.removesuffix("_total") for n in exposed} | exposed
    known = bases | {base + suffix for base in bases for suffix in SUFFIXES}
    unknown = used - known
    assert unknown == set()
    shown = (
        "vxplane_switch_revision_lag",
        "vxplane_attach_ready_seconds",
        "vxplane_agent_plug_step_seconds",
        "vxplane_agent_ovs_op_seconds",
        "vxplane_agent_reconcile_repairs_total",
        "vxplane_api_request_seconds",
    )
    for family in shown:
        assert any(n.startswith(family) for n in used), f"the dashboard does not show {family}"
