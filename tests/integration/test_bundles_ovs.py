"""ONF bundles against real OVS (3.1, userspace datapath) in the lab.

Two levels: the controller with ``VXPLANE_OPENFLOW_BUNDLES=always`` (every batch one bundle)
converges a 2-host lab whose endpoints ping, each switch holding exactly the flows the
controller counts; and the wire behaviour the engine relies on, spoken raw (``ofmsg``'s
bytes) on a bridge of its own: nothing of an open bundle is visible before the commit, all of
it after; a message OVS refuses at add time is answered with the inner message's own xid
before the bundle's barrier, and a discarded bundle leaves the table as it was (while a commit
would still apply the rest: why the engine discards).

Prefix ``vxbn-``, underlay 198.18.13.0/24, ports from tests/slots.py.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controller import ofmsg
from controller.flows import Flow, Output
from tests import slots
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess, controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

PREFIX = slots.prefix("vxbn-")
UNDERLAY = slots.underlay("198.18.13.0/24")
API_PORT, OF_PORT = slots.ports("test_bundles_ovs", 2)
BRIDGE = f"{PREFIX}bt"


@pytest.fixture(scope="module")
def stack(
    lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Lab, ControllerProcess, httpx.Client]]:
    with controller_and_lab(
        tmp_path_factory.mktemp("bundles"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=2,
        env={"VXPLANE_OPENFLOW_BUNDLES": "always"},
    ) as (lab, ctl, api):
        api.post("/api/v1/networks", json={"name": "bn", "subnet": "10.31.0.0/24"})
        yield lab, ctl, api


def _ofctl_flows(lab: Lab, host: str, bridge: str = "br-int") -> list[str]:
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", lab.ofctl_target(host, bridge)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if "cookie=" in line]


def test_every_batch_as_a_bundle_converges_and_traffic_flows(
    stack: tuple[Lab, ControllerProcess, httpx.Client],
) -> None:
    lab, ctl, api = stack
    a = lab.run("h1", "vxbn-a", "bn")
    b = lab.run("h2", "vxbn-b", "bn")
    assert a["state"] == b["state"] == "ready"
    assert lab.exec("vxbn-a", ["ping", "-c", "2", "-W", "1", "-q", b["ip"]], quiet=True) == 0
    lab.rm("vxbn-b")  # moved: h1's flows toward b are replaced, in one bundle
    b2 = lab.run("h1", "vxbn-b", "bn")
    assert b2["ip"] == b["ip"] and b2["state"] == "ready"
    assert lab.exec("vxbn-a", ["ping", "-c", "2", "-W", "1", "-q", b2["ip"]], quiet=True) == 0
    log = Path(ctl.log_path).read_text()
    for h in api.get("/api/v1/hosts").json():
        sw = h["switch"]
        assert sw["connected"] and len(_ofctl_flows(lab, h["name"])) == (sw["flow_count"]), (
            f"{h['name']}: OVS holds other flows than the controller counts"
        )
        assert re.search(rf"switch {h['dpid']} \([^)]*\): bundle 0x[0-9a-f]+ committed", log)
    assert "not committed" not in log and "refused a bundle" not in log


class RawOpenFlow:
    """One OpenFlow 1.3 connection to a bridge's management socket."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(path)
        self.sock.sendall(struct.pack("!BBHI", 4, 0, 8, 1))  # hello
        assert self.read()[0][1] == 0

    def read(self) -> list[tuple[int, int, int, bytes]]:
        """One message: [(version, type, xid, whole message)]."""
        head = self._exactly(8)
        version, mtype, length, xid = struct.unpack("!BBHI", head)
        return [(version, mtype, xid, head + self._exactly(length - 8))]

    def until_barrier(self, xid: int) -> list[tuple[int, int, int, bytes]]:
        """Everything the switch sends up to the barrier reply ``xid`` (excluded)."""
        got = []
        while True:
            (m,) = self.read()
            if m[1] == 21 and m[2] == xid:
                return got
            got.append(m)

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "OVS closed the connection"
            data += chunk
        return data


def _flows(n: int) -> list[Flow]:
    return [
        Flow(table=3, priority=100, match=(("in_port", i + 1),), actions=(Output(1),), cookie=i)
        for i in range(1, n + 1)
    ]


@pytest.fixture
def bridge(stack: tuple[Lab, ControllerProcess, httpx.Client]) -> Iterator[RawOpenFlow]:
    lab = stack[0]
    lab.vsctl("h1", "--may-exist", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE,
              "datapath_type=netdev", "protocols=OpenFlow13", "fail_mode=secure")  # fmt: skip
    conn = RawOpenFlow(lab.ofctl_target("h1", BRIDGE).removeprefix("unix:"))
    try:
        yield conn
    finally:
        conn.sock.close()
        lab.vsctl("h1", "--if-exists", "del-br", BRIDGE)


def test_ovs_applies_a_bundle_at_commit_and_names_a_refused_message_by_its_xid(
    stack: tuple[Lab, ControllerProcess, httpx.Client], bridge: RawOpenFlow
) -> None:
    lab = stack[0]
    good = _flows(50)
    bad = Flow(table=5, priority=1, goto=2, cookie=0xBAD)  # goto backwards: refused when added
    adds = [ofmsg.bundle_add_bytes(7, ofmsg.add_bytes(f, 100 + i)) for i, f in enumerate(good)]
    refused = ofmsg.bundle_add_bytes(7, ofmsg.add_bytes(bad, 999))
    bridge.sock.sendall(
        ofmsg.bundle_ctrl_bytes(7, ofmsg.BUNDLE_OPEN, 1)
        + b"".join(adds[:20]) + refused + b"".join(adds[20:])
        + ofmsg.barrier_bytes(2)
    )  # fmt: skip
    answers = bridge.until_barrier(2)
    assert answers[0][1] == 4, "the open reply (an experimenter message)"
    errors = [(xid, struct.unpack_from("!HH", m, 8)) for _, t, xid, m in answers if t == 1]
    assert errors == [(999, (3, 2))], "BAD_INSTRUCTION/BAD_TABLE_ID with the inner xid, only"
    assert _ofctl_flows(lab, "h1", BRIDGE) == [], "nothing of an open bundle is visible"
    bridge.sock.sendall(
        ofmsg.bundle_ctrl_bytes(7, ofmsg.BUNDLE_DISCARD, 3) + ofmsg.barrier_bytes(4)
    )
    assert [m[1] for m in bridge.until_barrier(4)] == [4]  # the discard reply
    assert _ofctl_flows(lab, "h1", BRIDGE) == []

    # the same bundle committed: OVS applies the rest (the non-atomic case the engine avoids)
    again = [ofmsg.bundle_add_bytes(8, ofmsg.add_bytes(f, 200 + i)) for i, f in enumerate(good)]
    bridge.sock.sendall(
        ofmsg.bundle_ctrl_bytes(8, ofmsg.BUNDLE_OPEN, 5) + b"".join(again)
        + ofmsg.bundle_add_bytes(8, ofmsg.add_bytes(bad, 998))
        + ofmsg.bundle_ctrl_bytes(8, ofmsg.BUNDLE_COMMIT, 6) + ofmsg.barrier_bytes(7)
    )  # fmt: skip
    answers = bridge.until_barrier(7)
    kinds = [struct.unpack_from("!H", m, 20)[0] for _, t, _, m in answers if t == 4]
    assert kinds == [ofmsg.BUNDLE_OPEN_REPLY, ofmsg.BUNDLE_COMMIT_REPLY]
    assert len(_ofctl_flows(lab, "h1", BRIDGE)) == len(good)


def test_ovs_bundle_of_adds_and_deletes_replaces_the_table_in_one_commit(
    stack: tuple[Lab, ControllerProcess, httpx.Client], bridge: RawOpenFlow
) -> None:
    lab = stack[0]
    old, new = _flows(30), _flows(60)[30:]
    bridge.sock.sendall(
        b"".join(ofmsg.add_bytes(f, 10 + i) for i, f in enumerate(old)) + ofmsg.barrier_bytes(1)
    )
    assert bridge.until_barrier(1) == []
    msgs = [ofmsg.add_bytes(f, 100 + i) for i, f in enumerate(new)]
    msgs += [ofmsg.delete_bytes(f.cookie, 200 + i) for i, f in enumerate(old)]
    bridge.sock.sendall(
        ofmsg.bundle_ctrl_bytes(9, ofmsg.BUNDLE_OPEN, 2)
        + b"".join(ofmsg.bundle_add_bytes(9, m) for m in msgs)
        + ofmsg.barrier_bytes(3)
    )
    assert [m[1] for m in bridge.until_barrier(3)] == [4], "open reply, no error"
    cookies = {
        int(re.search(r"cookie=(0x[0-9a-f]+)", f)[1], 16) for f in _ofctl_flows(lab, "h1", BRIDGE)
    }  # type: ignore[index]
    assert cookies == {f.cookie for f in old}, "before the commit: the old table, whole"
    bridge.sock.sendall(ofmsg.bundle_ctrl_bytes(9, ofmsg.BUNDLE_COMMIT, 4) + ofmsg.barrier_bytes(5))
    assert len(bridge.until_barrier(5)) == 1  # the commit reply
    flows = _ofctl_flows(lab, "h1", BRIDGE)
    cookies = {int(re.search(r"cookie=(0x[0-9a-f]+)", f)[1], 16) for f in flows}  # type: ignore[index]
    assert cookies == {f.cookie for f in new}, "after: the new table, whole"
