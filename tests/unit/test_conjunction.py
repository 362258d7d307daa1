"""The in-memory table's conjunctive matches and what it refuses, as OVS does."""

from __future__ import annotations

import pytest

from controller.flows import Conjunction, Output, flow
from controller.oftable import FlowRejected, Switch, tcp_packet

IP = {"eth_type": 0x0800}


def _switch() -> Switch:
    return Switch("s").load(
        [
            flow(0, 10, {**IP, "ipv4_src": "10.0.0.1"}, [Conjunction(1, 1, 2)]),
            flow(0, 10, {**IP, "ipv4_src": "10.0.0.2"},
                 [Conjunction(1, 1, 2), Conjunction(2, 1, 2)]),
            flow(0, 10, {**IP, "ip_proto": 6, "tcp_dst": 80}, [Conjunction(1, 2, 2)]),
            flow(0, 10, {**IP, "ip_proto": 6, "tcp_dst": 22}, [Conjunction(2, 2, 2)]),
            flow(0, 10, {"conj_id": 1}, [Output(7)]),
            flow(0, 10, {"conj_id": 2}, [Output(8)]),
            flow(0, 5, IP, [Output(9)]),
        ]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("src", "dport", "port"),
    [
        ("10.0.0.1", 80, 7),
        ("10.0.0.2", 80, 7),
        ("10.0.0.2", 22, 8),
        ("10.0.0.1", 22, 9),  # clause 1 of 1 and clause 2 of 2: neither complete
        ("10.0.0.3", 80, 9),
    ],
)
def test_every_clause_completes_a_conjunction(src: str, dport: int, port: int) -> None:
    out = _switch().process(tcp_packet("0a:58:00:00:00:01", src, "10.0.0.9", 1000, dport), 1)
    assert [e.port for e in out] == [port]


@pytest.mark.parametrize(
    "bad",
    [
        flow(0, 10, IP, [Conjunction(1, 1, 2), Output(3)]),
        flow(0, 10, IP, [Conjunction(1, 1, 2)], goto=3),
        flow(0, 10, IP, [Conjunction(1, 3, 2)]),
        flow(0, 10, IP, [Conjunction(1, 1, 1)]),
        flow(0, 10, IP, [Conjunction(1, 1, 2), Conjunction(1, 2, 2)]),
        flow(0, 10, {**IP, "conj_id": 1}, [Conjunction(2, 1, 2)]),
    ],
)
def test_bad_conjunctions_are_refused(bad: object) -> None:
    with pytest.raises(FlowRejected):
        Switch("s").add(bad)  # type: ignore[arg-type]
