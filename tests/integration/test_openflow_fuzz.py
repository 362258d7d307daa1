"""A real controller process against fake switches on loopback: admission and the fuzzer.

A switch whose dpid is no registered host's gets neither a flow dump nor a flow-mod; random
and malformed OpenFlow messages (the zero-length instruction and action that make os-ken's
parser loop, also as the answer to the controller's own flow dump) close only the sender's
connection while controller memory stays bounded and a well-behaved switch keeps
converging; a flow the switch rejects is held back, not resent in a loop. No root needed:
everything is on 127.0.0.1.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import ofswitch as of
from tests import slots
from tests.ofswitch import FakeSwitch
from vxlab.launch import ControllerProcess

pytestmark = pytest.mark.timeout(300)

API_PORT, OF_PORT = slots.ports("test_openflow_fuzz", 2)
GOOD, TARGET, UNKNOWN = 0x1001, 0x1002, 0xBAD0
HANDSHAKE_TIMEOUT = 2.0
ZERO_INSTRUCTION = of.instruction(4, b"", length=0)
ZERO_ACTION = of.apply_actions(struct.pack("!HH4x", 0, 0))


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    tmp: Path = tmp_path_factory.mktemp("offuzz")
    ctl = ControllerProcess(
        f"sqlite:///{tmp}/vx.db", tmp / "controller.log", API_PORT, OF_PORT,
        api_host="127.0.0.1", openflow_host="127.0.0.1",
        env={"VXPLANE_SWITCH_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT)},
    )  # fmt: skip
    ctl.start()
    try:
        yield ctl
    finally:
        ctl.stop()


@pytest.fixture(scope="module")
def api(controller: ControllerProcess) -> Iterator[httpx.Client]:
    """Hosts good and target and network fz, good's address block taken before target
    registers: every later bind on good then changes only good's flows. (A bind that takes a
    new block changes every host's routes, so it waits for target's switch too, which is
    mostly not connected here: readiness counts a never-connected switch by design.)"""
    with controller.client() as client:
        hosts = {"good": GOOD, "target": TARGET}
        bodies = {
            name: {"underlay_ip": f"198.18.200.{i}", "dpid": f"{dpid:016x}"}
            for i, (name, dpid) in enumerate(hosts.items(), start=1)
        }
        client.put("/api/v1/hosts/good", json=bodies["good"]).raise_for_status()
        client.post("/api/v1/networks", json={"name": "fz", "subnet": "10.77.0.0/24"})
        client.put(
            "/api/v1/networks/fz/endpoints/block/binding",
            params={"create": "true"},
            json={"host": "good", "ofport": 9},
        ).raise_for_status()
        client.put("/api/v1/hosts/target", json=bodies["target"]).raise_for_status()
        yield client


def _switch(dpid: int, **kw: object) -> FakeSwitch:
    sw = FakeSwitch("127.0.0.1", OF_PORT, dpid, **kw)  # type: ignore[arg-type]
    sw.wait("features request", sw.ready.is_set)
    return sw


def _bind(api: httpx.Client, name: str, ofport: int, host: str = "good") -> dict:
    resp = api.put(
        f"/api/v1/networks/fz/endpoints/{name}/binding",
        params={"create": "true", "wait_ready": 5},
        json={"host": host, "ofport": ofport},
        timeout=30,
    )
    resp.raise_for_status()
    return resp.json()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _converges(api: httpx.Client, good: FakeSwitch, name: str, ofport: int) -> float:
    """Bind ``name`` on the good switch's host; seconds until it was ready."""
    t0 = time.monotonic()
    ep = _bind(api, name, ofport)
    took = time.monotonic() - t0
    assert ep["state"] == "ready", f"{name} not ready: {ep}"
    return took


def test_unregistered_dpid_gets_no_flow_dump_and_no_flow_mod(api: httpx.Client) -> None:
    stranger = _switch(UNKNOWN)
    good = _switch(GOOD)
    try:
        good.wait("flow dump", lambda: good.dump_requests >= 1)
        _converges(api, good, "adm1", 11)
        assert good.flow_mods, "the registered switch is being written to"
        time.sleep(1.0)
        assert (stranger.dump_requests, stranger.flow_mods) == (0, [])
        assert not stranger.closed.is_set(), "held (its host may register), not dropped"
    finally:
        stranger.close()
        good.close()


def test_second_connection_for_a_connected_dpid_is_refused(api: httpx.Client) -> None:
    first = _switch(GOOD)
    try:
        first.wait("flow dump", lambda: first.dump_requests >= 1)
        second = FakeSwitch("127.0.0.1", OF_PORT, GOOD)
        assert second.wait_closed(10), "the second connection was not refused"
        assert (second.dump_requests, second.flow_mods) == (0, [])
        assert not first.closed.is_set()
        _converges(api, first, "adm2", 12)
    finally:
        first.close()


def test_silent_connections_are_closed_after_the_handshake_deadline(api: httpx.Client) -> None:
    """Connections that never finish the OpenFlow handshake (nothing sent, or a hello only)
    are closed, so they cannot pile up; a switch that finishes it is kept."""
    silent = [socket.create_connection(("127.0.0.1", OF_PORT), timeout=10) for _ in range(20)]
    for s in silent[::2]:
        s.sendall(of.hello())
    good = _switch(GOOD)
    try:
        t0 = time.monotonic()
        for s in silent:
            with s:
                while s.recv(65536):  # the controller's hello and features request, then EOF
                    pass
        took = time.monotonic() - t0
        assert took < HANDSHAKE_TIMEOUT + 4, f"silent connections open for {took:.1f} s"
        assert not good.closed.is_set(), "the switch that finished its handshake was closed"
        _converges(api, good, "hs1", 40)
    finally:
        good.close()


def _fuzz_messages(rng: random.Random) -> list[bytes]:
    zero_hello = of.hello(elements=struct.pack("!HH", 1, 0))
    out = [
        zero_hello,
        of.flow_stats_reply(1, [of.flow_stats(1, ZERO_INSTRUCTION)]),
        of.flow_stats_reply(1, [of.flow_stats(1, ZERO_ACTION)]),
        of.flow_stats_reply(1, [of.flow_stats(1, length=0)], flags=of.MORE),
        of.multipart_reply(1, 7, of.instruction(4, b"", length=0)),  # group desc
        of.msg(of.FLOW_MOD, 1, b"\0" * 40 + ZERO_INSTRUCTION),
        struct.pack("!BBHI", 4, 0, 0, 0),
    ]
    for _ in range(30):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        mtype = rng.choice([0, 1, 2, 3, 4, 6, 10, 11, 12, 19, 19, 19, rng.randrange(256)])
        if mtype == 19 and len(body) >= 8:
            body = struct.pack("!HH4x", rng.choice([0, 1, 1, 7, 13, 12]), 0) + body[8:]
        out.append(of.msg(mtype, rng.getrandbits(32), body, rng.choice([4, 4, 4, 1, 5, 6])))
    return out


def _raw_connection(messages: list[bytes], handshake_dpid: int | None) -> None:
    """One attacker connection: optionally a full handshake as ``handshake_dpid`` first."""
    if handshake_dpid is not None:
        sw = _switch(handshake_dpid)
        for m in messages:
            if not sw.send(m):
                break
        sw.wait_closed(0.2)
        sw.close()
        return
    with socket.create_connection(("127.0.0.1", OF_PORT), timeout=5) as s:
        try:
            for m in messages:
                s.sendall(m)
            s.settimeout(0.2)
            s.recv(65536)
        except OSError:
            pass


def test_fuzzer_closes_senders_memory_stays_bounded_and_others_converge(
    api: httpx.Client, controller: ControllerProcess
) -> None:
    assert controller.pid is not None
    good = _switch(GOOD)
    try:
        good.wait("flow dump", lambda: good.dump_requests >= 1)
        _converges(api, good, "fz0", 20)
        rss_before = _rss_kb(controller.pid)
        rng = random.Random(20261130)
        worst = 0.0
        for round_ in range(12):
            for k in range(8):
                msgs = _fuzz_messages(rng)
                rng.shuffle(msgs)
                _raw_connection(msgs, UNKNOWN + k if k % 2 else None)
            # the zero-length cases as the answer to the controller's own dump, from a
            # registered switch
            bad = ZERO_INSTRUCTION if round_ % 2 else ZERO_ACTION
            target = _switch(TARGET, dump_reply=of.flow_stats_reply(0, [of.flow_stats(1, bad)]))
            assert target.wait_closed(10), "a malformed flow dump did not close its switch"
            assert target.dump_requests == 1 and target.flow_mods == []
            worst = max(worst, _converges(api, good, f"fz{round_ + 1}", 100 + round_))
        rss_after = _rss_kb(controller.pid)
    finally:
        good.close()
    assert controller.proc is not None and controller.proc.poll() is None, "controller died"
    assert api.get("/healthz").status_code == 200
    grown_mb = (rss_after - rss_before) / 1024
    assert grown_mb < 64, f"controller RSS grew {grown_mb:.0f} MB under the fuzzer"
    assert worst < 3.0, f"an attach on the good switch took {worst:.2f} s during the fuzzing"


def test_rejected_flow_is_held_back_and_others_converge(api: httpx.Client) -> None:
    broken = 77  # the switch refuses every flow naming this port, as OVS does above 65279
    marks = (struct.pack("!HHI", 0, 16, broken), struct.pack("!II", 0x80000004, broken))
    good = _switch(GOOD, reject=lambda body: any(m in body for m in marks))
    try:
        good.wait("flow dump", lambda: good.dump_requests >= 1)
        _converges(api, good, "q0", 50)
        api.put(
            "/api/v1/networks/fz/endpoints/qbad/binding",
            params={"create": "true"},
            json={"host": "good", "ofport": broken},
        ).raise_for_status()
        t0 = time.monotonic()
        sent_before = len(good.flow_mods)
        slowest = max(_converges(api, good, f"q{i}", 50 + i) for i in range(1, 6))
        time.sleep(max(0.0, 5.0 - (time.monotonic() - t0)))
        cycles = len(good.flow_mods) - sent_before
        host = api.get("/api/v1/hosts/good").json()
        events = api.get("/api/v1/events/recent", params={"types": "switch.flow_rejected"}).json()[
            "events"
        ]
    finally:
        good.close()
    assert good.dump_requests == 1, f"{good.dump_requests} flow dumps: a resync loop"
    assert cycles < 80, f"{cycles} flow-mods in 5 s: the rejected flow is resent in a loop"
    assert slowest < 3.0, f"attaches elsewhere stalled ({slowest:.2f} s)"
    assert host["switch"]["rejected_flows"] >= 1
    assert events and events[-1]["data"]["host"] == "good"
