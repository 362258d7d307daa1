"""The switch half of ``vxplane trace``, pure parts: the packet as ``ofproto/trace`` takes it,
its output parsed (``LOCAL`` and ``MISS`` as Open vSwitch 3.1 printed them on these machines;
``TUNNEL`` in the same layout, with the underlay bridge's section a tunnelled packet gets), the
comparison with the model, and the agent's task loop with a fake controller client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller import trace
from hostagent.errors import AgentError
from hostagent.tasks import FLOW_TEXT, TaskLoop, ofproto_trace, vswitchd_ctl
from tests.unit.conftest import Lab

LOCAL = """\
Flow: tcp,in_port=2,vlan_tci=0x0000,dl_src=0a:58:0a:00:00:02,dl_dst=0a:58:0a:00:00:03,nw_src=10.0.0.2,nw_dst=10.0.0.3,nw_tos=0,nw_ecn=0,nw_ttl=0,nw_frag=no,tp_src=40000,tp_dst=80,tcp_flags=0

bridge("obsbr")
---------------
 0. ip,in_port=2,nw_src=10.0.0.2, priority 100, cookie 0x1234abcd
    set_field:0xc8->metadata
    goto_table:30
30. ip,metadata=0xc8,nw_dst=10.0.0.3, priority 100, cookie 0x99
    output:3

Final flow: unchanged
Megaflow: recirc_id=0,eth,ip,in_port=2,nw_src=10.0.0.2,nw_dst=10.0.0.3,nw_frag=no
Datapath actions: 3
"""  # noqa: E501
MISS = """\
Flow: ip,in_port=2,vlan_tci=0x0000,dl_src=0a:58:0a:00:00:02,dl_dst=0a:58:0a:00:00:42,nw_src=10.0.0.2,nw_dst=10.0.0.200,nw_proto=0,nw_tos=0,nw_ecn=0,nw_ttl=0,nw_frag=no

bridge("obsbr")
---------------
 0. ip,in_port=2,nw_src=10.0.0.2, priority 100, cookie 0x1234abcd
    set_field:0xc8->metadata
    goto_table:30
30. No match.
    drop

Final flow: unchanged
Megaflow: recirc_id=0,eth,ip,in_port=2,nw_src=10.0.0.2,nw_dst=10.0.0.128/25,nw_frag=no
Datapath actions: drop
"""  # noqa: E501
TUNNEL = """\
bridge("br-int")
----------------
 0. ip,in_port=4, priority 100, cookie 0x11
    goto_table:40
40. ip,metadata=0xc8,nw_dst=10.0.0.128/26, priority 100, cookie 0x22
    set_field:198.18.0.3->tun_dst
    output:1
     -> output to native tunnel
     -> tunneling to 198.18.0.3 via br-phy
     -> tunneling from 0a:9a:1f:f4:f3:4e 198.18.0.1 to f6:b5:db:41:10:46 198.18.0.3

bridge("br-phy")
----------------
 0. priority 0
    NORMAL
     -> forwarding to learned port

Final flow: unchanged
Datapath actions: tnl_push(tnl_port(3),header(size=50,type=4)),2
"""


def test_ofproto_trace_output_is_parsed() -> None:
    assert trace.parse_ofproto_trace(LOCAL, "obsbr") == ([(0, 0x1234ABCD), (30, 0x99)], [3], "3")
    assert trace.parse_ofproto_trace(MISS, "obsbr") == ([(0, 0x1234ABCD), (30, None)], [], "drop")
    steps, outputs, actions = trace.parse_ofproto_trace(TUNNEL)
    assert steps == [(0, 0x11), (40, 0x22)], "the underlay bridge's section is not the model's"
    assert outputs == [1] and actions.startswith("tnl_push")
    assert trace.parse_ofproto_trace(LOCAL) == ([], [], "3"), "another bridge's tables"


def test_entries_become_ofproto_trace_flows(lab: Lab) -> None:
    probe = trace.resolve(lab.snap, "blue", "b1a", "b3a", "tcp", 5432)
    got = trace.trace_model(lab.snap, probe)
    local, tunnelled = (trace.ovs_flow(e) for e in got.entries)
    assert local.startswith("in_port=4,") and "tun_id" not in local
    assert "dl_src=0a:58:0a:00:00:02" in local and "nw_dst=10.0.0.130" in local
    assert "nw_proto=6" in local and "tcp_dst=5432" in local  # not tp_dst: OVS refuses it for UDP
    assert tunnelled.startswith("in_port=1,") and "tun_id=0xc8" in tunnelled
    assert "tun_src=198.18.0.1" in tunnelled and "tun_dst=198.18.0.3" in tunnelled
    assert FLOW_TEXT.match(local) and FLOW_TEXT.match(tunnelled)


def _as_ovs(steps: list[trace.Step]) -> str:
    lines = ['bridge("br-int")', "----------------"]
    for s in steps:
        lines.append(f"{s.table}. No match." if s.cookie is None else
                     f"{s.table}. ip, priority {s.priority}, cookie {s.cookie:#x}")  # fmt: skip
    return "\n".join([*lines, "", "Datapath actions: 3"])


def test_a_switch_agrees_only_with_the_same_tables_and_flows(lab: Lab) -> None:
    got = trace.trace_model(lab.snap, trace.resolve(lab.snap, "red", "r1a", "r1b", "icmp", None))
    same = trace.compare(got, "h1", {"output": _as_ovs(list(got.steps)), "error": None})
    assert same.answered and same.agrees
    rogue = [trace.Step("h1", 0, 0xBAD, 65000)]
    assert not trace.compare(got, "h1", {"output": _as_ovs(rogue)}).agrees
    silent = trace.compare(got, "h1", None)
    assert not silent.answered and not silent.agrees and "did not answer" in (silent.error or "")
    failed = trace.compare(got, "h1", {"output": "", "error": "no such bridge"})
    assert failed.answered and not failed.agrees and failed.error == "no such bridge"


class FakeClient:
    def __init__(self) -> None:
        self.answers: list[tuple[str, str, str | None]] = []

    def answer_task(self, host: str, task_id: str, output: str, error: str | None) -> None:
        self.answers.append((task_id, output, error))


@pytest.mark.parametrize(
    ("task", "output", "error"),
    [
        ({"id": "a", "kind": "ofproto/trace", "args": {"bridge": "br-int", "flow": "in_port=2"}},
         "traced br-int in_port=2", None),
        ({"id": "b", "kind": "shell", "args": {}}, "", "does not know task 'shell'"),
        ({"id": "c", "kind": "ofproto/trace", "args": {"bridge": "br-phy", "flow": "in_port=2"}},
         "", "only its own bridge"),
    ],
)  # fmt: skip
def test_the_agent_answers_each_task(task: dict[str, Any], output: str, error: str | None) -> None:
    client = FakeClient()
    loop = TaskLoop(client, "h1", "br-int", "/run/x.ctl",  # type: ignore[arg-type]
                    trace=lambda ctl, bridge, flow: f"traced {bridge} {flow}")  # fmt: skip
    loop.handle(task)
    ((task_id, said, why),) = client.answers
    assert task_id == task["id"] and said == output
    assert (why is None) if error is None else (error in (why or ""))


def test_the_agent_traces_only_plain_flows() -> None:
    with pytest.raises(AgentError, match="not a plain field=value flow"):
        ofproto_trace("/nonexistent.ctl", "br-int", "in_port=2; rm -rf /")
    with pytest.raises(AgentError, match="ofproto/trace"):
        ofproto_trace("/nonexistent.ctl", "br-int", "in_port=2")


def test_the_vswitchd_control_socket_is_found_beside_ovsdb(tmp_path: Path) -> None:
    db = f"unix:{tmp_path}/db.sock"
    (tmp_path / "ovs-vswitchd.pid").write_text("4242\n")
    assert vswitchd_ctl(db) == f"{tmp_path}/ovs-vswitchd.4242.ctl"
    (tmp_path / "ovs-vswitchd.ctl").touch()
    assert vswitchd_ctl(db) == f"{tmp_path}/ovs-vswitchd.ctl"
    assert vswitchd_ctl(db, "/elsewhere.ctl") == "/elsewhere.ctl"
    assert vswitchd_ctl("tcp:127.0.0.1:6640").startswith("/run/openvswitch/")
