"""The event hub (ids, ring buffer, replay, subscribers), host liveness transitions, the
engine's switch events, and the CLI's server-sent-events parser."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address

import pytest

from controller.cli.events import sse_messages
from controller.db.records import HostRecord
from controller.engine import Engine
from controller.events import EVENT_TYPES, EventHub, summarize
from controller.hostwatch import HostWatch, is_alive
from controller.model import Host, Snapshot

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_ids_increase_by_one_and_ring_keeps_the_newest() -> None:
    hub = EventHub(capacity=3)
    for i in range(5):
        hub.publish("network.created", network=f"n{i}", vni=i + 1, subnet="10.0.0.0/24")
    assert hub.last_id == 5
    assert [e.id for e in hub.recent(10)] == [3, 4, 5]
    assert [e.id for e in hub.recent(2)] == [4, 5]
    events, missed = hub.since(3)
    assert [e.id for e in events] == [4, 5] and not missed
    events, missed = hub.since(1)  # 2 is gone: the reader missed it
    assert [e.id for e in events] == [3, 4, 5] and missed
    assert hub.since(5) == ([], False)


def test_none_values_are_dropped_and_summaries_read_well() -> None:
    hub = EventHub()
    event = hub.publish(
        "endpoint.moved", network="blue", endpoint="web", ip="10.0.0.2", host="h2",
        from_host="h1", ofport=None,
    )  # fmt: skip
    assert "ofport" not in event.data
    assert event.summary == "endpoint blue/web (10.0.0.2) moved from h1 to h2"
    assert event.as_dict()["type"] == "endpoint.moved"
    assert hub.epoch != EventHub().epoch
    for kind in EVENT_TYPES:  # every type has its own sentence
        assert summarize(kind, {"host": "h1", "network": "n"}) != kind


def test_subscriber_is_woken_from_another_thread() -> None:
    hub = EventHub()

    async def wait_for_one() -> list[int]:
        sub = hub.subscribe()
        try:
            threading.Timer(0.05, lambda: hub.publish("host.lost", host="h1")).start()
            await asyncio.wait_for(sub.ready.wait(), 2)
            return [e.id for e in hub.since(0)[0]]
        finally:
            hub.unsubscribe(sub)

    assert asyncio.run(wait_for_one()) == [1]
    assert hub.subscribers == 0
    hub.publish("host.alive", host="h1")  # nobody listens: fine


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        EventHub(capacity=0)


def _host(name: str, seen: datetime | None) -> HostRecord:
    return HostRecord(name, IPv4Address("198.18.0.1"), None, 1, seen, T0)


def test_host_watch_reports_only_transitions() -> None:
    watch = HostWatch()
    assert is_alive(T0, T0 + timedelta(seconds=3), 3) and not is_alive(None, T0, 3)
    assert watch.check([_host("h1", T0), _host("h2", T0)], T0, 3) == []  # first look: baseline
    later = T0 + timedelta(seconds=4)
    lost = watch.check([_host("h1", T0), _host("h2", later)], later, 3)
    assert lost == [("host.lost", {"host": "h1", "last_seen": T0.isoformat()})]
    assert watch.check([_host("h1", T0), _host("h2", later)], later, 3) == []  # said once
    back = watch.check([_host("h1", later), _host("h3", None)], later, 3)
    assert back == [("host.alive", {"host": "h1", "last_seen": later.isoformat()})]
    # h4 registered and stopped between two looks: dead at first sight, still reported lost
    much_later = later + timedelta(seconds=10)
    gone = watch.check([_host("h1", much_later), _host("h4", later)], much_later, 3)
    assert gone == [("host.lost", {"host": "h4", "last_seen": later.isoformat()})]


class _Conn:
    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.address = "198.18.0.1:5555"
        self.peer_name: str | None = None
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def request_flow_dump(self) -> None:
        pass

    def missed_echo(self) -> bool:
        return False

    def congested(self) -> bool:
        return False

    def close(self) -> None:
        pass


def test_engine_reports_switch_events_and_survives_a_failing_sink() -> None:
    seen: list[tuple[str, dict[str, object]]] = []

    def sink(kind: str, **data: object) -> None:
        seen.append((kind, data))
        if kind == "switch.disconnected":
            raise RuntimeError("sink broken")

    engine = Engine(lambda: None, lambda s: None, lambda s: 0, lambda s, r: 0, on_event=sink)  # type: ignore[arg-type,return-value]
    engine.sync_all(Snapshot(1, hosts={"h1": Host("h1", IPv4Address("198.18.0.1"), dpid=0xAB)}))
    conn = _Conn(0xAB)
    engine.switch_connected(conn)
    engine.barrier_reply(0xAB, 12345)  # unknown xid: nothing
    engine.switch_disconnected(0xAB)
    assert [k for k, _ in seen] == ["switch.connected", "switch.disconnected"]
    assert seen[0][1] == {"dpid": "00000000000000ab", "host": "h1", "address": conn.address}


def test_sse_parser() -> None:
    lines = [
        "retry: 2000", "event: hello", 'data: {"epoch": "x"}', "",
        ": keep-alive", "",
        "id: 7", 'data: {"id": 7}', "",
    ]  # fmt: skip
    assert list(sse_messages(iter(lines))) == [
        ("hello", '{"epoch": "x"}', None),
        ("message", '{"id": 7}', "7"),
    ]


def test_engine_reports_convergence_when_the_last_barrier_returns() -> None:
    from tests.unit.test_engine import FakeConn, Harness

    h = Harness()
    seen: list[tuple[str, dict[str, object]]] = []
    h.engine._on_event = lambda kind, **data: seen.append((kind, data))
    conn = FakeConn(1)
    h.engine.switch_connected(conn)
    h.engine.switch_dump(1, [], more=False)
    h.sync()
    assert [k for k, _ in seen] == ["switch.connected"]
    h.engine.barrier_reply(1, conn.barriers()[-1])
    assert seen[-1] == (
        "switch.converged",
        {"dpid": "0000000000000001", "host": "h1", "revision": 1},
    )


def test_network_created_names_its_ipv6_prefix_when_dual_stack() -> None:
    data = {"network": "n", "vni": 3, "subnet": "10.0.0.0/24", "subnet6": None}
    assert summarize("network.created", data) == "network n created: 10.0.0.0/24 vni 3"
    data["subnet6"] = "fd00:3::/64"
    assert summarize("network.created", data) == "network n created: 10.0.0.0/24 fd00:3::/64 vni 3"
