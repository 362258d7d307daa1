"""``vxplane trace`` on the real stack: the model and the real switches (``ofproto/trace`` run
by each agent on its host, asked over its own long poll) agree on delivered packets and on
packets dropped by isolation, by a policy (named, as is the rule that allows what passes) and
by port security; a flow slipped into a switch behind the controller's back makes them
disagree (exit status 3).

Prefix ``vxq-``, underlay 198.18.22.0/24, ports from tests/slots.py (moved by
``VXTEST_SLOT``).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from controller.cli.main import app as cli
from tests import slots
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess, controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

PREFIX = slots.prefix("vxq-")
UNDERLAY = slots.underlay("198.18.22.0/24")
API_PORT, OF_PORT = slots.ports("test_trace_lab", 2)
ROGUE_COOKIE = 0x0BADC0DE
DB_FROM_WEB = {
    "name": "db-from-web",
    "selector": {"matchLabels": {"role": "db"}},
    "ingress": [
        {"from": [{"selector": {"matchLabels": {"role": "web"}}}],
         "ports": [{"protocol": "tcp", "port": 5432}]}
    ],
}  # fmt: skip


@dataclass
class Stack:
    lab: Lab
    ctl: ControllerProcess

    def trace(self, *args: str) -> tuple[int, dict]:
        env = {"VXPLANE_API": self.ctl.url, "VXPLANE_TOKEN": self.ctl.token}
        result = CliRunner().invoke(cli, ["trace", *args, "-o", "json"], env=env)
        body = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
        return result.exit_code, body


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with controller_and_lab(
        tmp_path_factory.mktemp("trace"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=2,
    ) as (lab, ctl, api):
        for net in ("blue", "red"):
            api.post("/api/v1/networks", json={"name": net, "subnet": "10.50.0.0/24"})
        lab.run("h1", f"{PREFIX}web", "blue")
        lab.run("h2", f"{PREFIX}db", "blue")
        lab.run("h2", f"{PREFIX}red", "red", ip="10.50.0.99")
        # green: db accepts tcp/5432 from web only
        api.post("/api/v1/networks", json={"name": "green", "subnet": "10.51.0.0/24"})
        lab.run("h1", f"{PREFIX}gweb", "green", labels={"role": "web"})
        lab.run("h2", f"{PREFIX}gdb", "green", labels={"role": "db"})
        r = api.post("/api/v1/networks/green/policies", json=DB_FROM_WEB)
        assert r.status_code == 201, r.text
        yield Stack(lab, ctl)


def test_delivered_the_model_and_both_switches_agree(stack: Stack) -> None:
    code, got = stack.trace("blue", f"{PREFIX}web", f"{PREFIX}db", "--tcp", "5432")
    assert code == 0, json.dumps(got.get("switches"), indent=1)
    assert got["verdict"] == "delivered" and got["agree"] is True
    assert [s["host"] for s in got["switches"]] == [stack.lab.host_name(1), stack.lab.host_name(2)]
    for sw in got["switches"]:
        assert sw["answered"] and sw["agrees"] and sw["error"] is None
    assert got["switches"][-1]["outputs"], "h2's switch outputs the packet to db's port"
    for proto in (["--udp", "53"], ["--icmp"]):  # each protocol's fields as OVS takes them
        code, got = stack.trace("blue", f"{PREFIX}web", f"{PREFIX}db", *proto)
        assert (code, got["agree"]) == (0, True), json.dumps(got.get("switches"), indent=1)


def test_dropped_by_isolation_the_switch_agrees(stack: Stack) -> None:
    code, got = stack.trace("blue", f"{PREFIX}web", "10.50.0.99", "--udp", "53")
    assert code == 1, json.dumps(
        [got.get("reason"), got.get("model"), got.get("switches")], indent=1
    )
    assert got["verdict"] == "dropped" and got["agree"] is True
    assert got["switches"][-1]["datapath_actions"] == "drop"


def _explain(got: dict) -> str:
    return json.dumps([got.get("reason"), got.get("model"), got.get("switches")], indent=1)


def test_allowed_by_a_policy_rule_both_agree_and_the_rule_is_named(stack: Stack) -> None:
    code, got = stack.trace("green", f"{PREFIX}gweb", f"{PREFIX}gdb", "--tcp", "5432")
    assert code == 0, _explain(got)
    assert got["verdict"] == "delivered" and got["agree"] is True
    assert got["policy"] == [f"ingress of {PREFIX}gdb on {stack.lab.host_name(2)}: allowed by "
                             "policy db-from-web ingress rule 1"]  # fmt: skip
    assert "allowed by policy db-from-web ingress rule 1" in got["reason"]
    tables = [s["table"] for s in got["switches"][-1]["steps"]]
    assert 31 in tables, "h2's switch went through the ingress policy check (after ct)"


def test_dropped_by_policy_both_agree(stack: Stack) -> None:
    code, got = stack.trace("green", f"{PREFIX}gweb", f"{PREFIX}gdb", "--tcp", "6000")
    assert code == 1, _explain(got)
    assert got["verdict"] == "dropped" and got["agree"] is True
    assert got["reason"].startswith(
        f"dropped by policy (ingress of {PREFIX}gdb on {stack.lab.host_name(2)}): isolated by "
        "db-from-web; no rule allows tcp/6000"
    ), got["reason"]
    assert got["decided_by"]["table"] == 31
    assert got["switches"][-1]["datapath_actions"] == "drop"


def test_dropped_by_port_security_both_agree(stack: Stack) -> None:
    code, got = stack.trace(
        "blue", f"{PREFIX}web", f"{PREFIX}db", "--tcp", "5432", "--src-ip", "10.50.0.200"
    )
    assert code == 1, _explain(got)
    assert got["verdict"] == "dropped" and got["agree"] is True
    assert got["src_ip"] == "10.50.0.200"
    assert got["reason"].startswith(f"dropped by port security: {PREFIX}web may send only from")
    assert got["decided_by"]["table"] == 0
    (h1,) = got["switches"]  # it never left h1
    assert h1["host"] == stack.lab.host_name(1) and h1["datapath_actions"] == "drop"


def test_a_tampered_switch_disagrees_with_the_model(stack: Stack) -> None:
    h2 = stack.lab.host_name(2)
    target = stack.lab.ofctl_target(h2)
    rogue = f"table=0,priority=65000,cookie={ROGUE_COOKIE:#x},ip,nw_dst=10.50.0.0/24,actions=drop"
    ofctl = ["ovs-ofctl", "-O", "OpenFlow13"]
    subprocess.run([*ofctl, "add-flow", target, rogue], check=True)
    try:
        code, got = stack.trace("blue", f"{PREFIX}web", f"{PREFIX}db", "--tcp", "5432")
    finally:
        subprocess.run([*ofctl, "del-flows", target, f"cookie={ROGUE_COOKIE:#x}/-1"], check=True)
    assert code == 3, got
    assert got["verdict"] == "delivered", "the model knows nothing of the rogue flow"
    assert got["agree"] is False
    h2_trace = got["switches"][-1]
    assert not h2_trace["agrees"] and h2_trace["steps"][0]["cookie"] == f"{ROGUE_COOKIE:016x}"
    code, again = stack.trace("blue", f"{PREFIX}web", f"{PREFIX}db", "--tcp", "5432")
    assert code == 0 and again["agree"] is True, "without the rogue flow they agree again"
