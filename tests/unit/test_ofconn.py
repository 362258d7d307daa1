"""The per-switch send queue bounded in bytes and the shared echo prober (controller.ofconn),
and the listening socket's backlog as ofapp sets it."""

from __future__ import annotations

import socket
import subprocess
import threading

from controller import ofapp
from controller.ofconn import Budget, Prober, SendQueue


def test_queue_is_congested_over_high_water_and_drained_under_low_water() -> None:
    drained: list[int] = []
    q = SendQueue(high=100, low=40, cap=1000, on_drained=lambda: drained.append(q.queued))
    assert q.put(b"x" * 60) == "ok" and not q.congested
    assert q.put(b"y" * 60) == "ok" and q.congested and q.peak == 120
    data, _ = q.get()  # type: ignore[misc]
    q.done(len(data))
    assert q.congested and drained == [], "60 left: still over low water"
    data, _ = q.get()  # type: ignore[misc]
    q.done(len(data))
    assert not q.congested and drained == [0] and q.written == 120


def test_queue_refuses_over_its_cap_and_after_close_without_blocking() -> None:
    q = SendQueue(high=10, low=5, cap=100)
    assert q.put(b"x" * 90) == "ok"
    assert q.put(b"y" * 20) == "overflow" and q.queued == 90, "not queued"
    q.close()
    assert q.put(b"z") == "closed" and q.get() is None and q.queued == 0


def test_the_sum_of_all_queues_over_the_budget_blocks_every_switch_until_it_drains() -> None:
    woken: list[int] = []
    budget = Budget(high=100, low=50, on_drained=lambda: woken.append(budget.queued))
    a, b, c = (SendQueue(high=1000, low=10, cap=10_000, budget=budget) for _ in range(3))
    assert a.put(b"x" * 60) == "ok" and b.put(b"y" * 30) == "ok"
    assert not any(q.blocked() for q in (a, b, c)) and budget.queued == 90
    assert a.put(b"z" * 20) == "ok", "a batch under way is never refused by the budget"
    assert all(q.blocked() for q in (a, b, c)), "c queued nothing and still waits"
    assert not any(q.congested for q in (a, b, c)), "no queue alone is over its own mark"
    data, _ = a.get()  # type: ignore[misc]
    a.done(len(data))
    assert budget.queued == 50 and woken == [50] and not c.blocked()
    b.close()  # a closed queue gives its bytes back, once, also if its writer ends late
    b.done(30)
    assert budget.queued == 20 and budget.peak == 110 and budget.overs == 1


def test_a_blocked_get_returns_when_closed() -> None:
    q = SendQueue()
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.close()
    t.join(5)
    assert got == [None]


class FakeProbed:
    def __init__(self) -> None:
        self.idle = 0
        self.act = 0
        self.waiting = 0
        self.echoes = 0
        self.expired: list[str] = []
        self.pending = False

    def backlogged(self) -> bool:
        return self.pending

    def activity(self) -> int:
        return self.act

    def unread(self) -> int:
        return self.waiting

    def send_echo(self) -> None:
        self.echoes += 1

    def expire(self, reason: str) -> None:
        self.expired.append(reason)


def test_prober_echoes_only_idle_switches_and_closes_after_its_misses() -> None:
    p = Prober(interval=2.0, misses=3)
    busy, slow, dead = FakeProbed(), FakeProbed(), FakeProbed()
    for c in (busy, slow, dead):
        p._conns[id(c)] = (c, [c.activity()])  # as add() does, without the thread
    for _ in range(6):
        busy.act += 1  # messages or bytes read every period
        slow.waiting = 1000  # its messages wait unread in our buffer: we are the slow one
        p.tick()
    assert (busy.echoes, busy.expired) == (0, []), "a switch showing life is not probed"
    assert (slow.echoes, slow.expired) == (0, []), "unread bytes are a sign of life"
    assert dead.echoes == 3 and dead.expired == ["no sign of life for 8 s"]
    assert len(p) == 2


def test_an_echo_reply_resets_the_count() -> None:
    p = Prober(interval=1.0, misses=2)
    c = FakeProbed()
    p._conns[id(c)] = (c, [0])
    p.tick()
    p.tick()
    assert c.idle == 2 and c.echoes == 2
    c.act += 1  # the reply
    p.tick()
    assert c.idle == 0 and c.expired == []


def test_listen_backlog_is_raised_for_a_thousand_switches_at_once() -> None:
    from os_ken.lib import hub

    server = ofapp._logged_server(hub.StreamServer)(("127.0.0.1", 0), lambda s, a: None)
    sock: socket.socket = server.server
    try:
        port = sock.getsockname()[1]
        out = subprocess.run(
            ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        limit = int(open("/proc/sys/net/core/somaxconn").read())
        assert int(out[2]) == min(ofapp.LISTEN_BACKLOG, limit) >= 1000, out  # Send-Q: backlog
    finally:
        sock.close()


def _datapath_pair() -> tuple[ofapp.VxDatapath, socket.socket, threading.Thread]:
    """A VxDatapath on a real loopback TCP connection, its writer running; and the peer."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        peer = socket.create_connection(srv.getsockname())
        ours, _ = srv.accept()
    dp = ofapp.VxDatapath(ours, ("127.0.0.1", peer.getsockname()[1]))
    writer = threading.Thread(target=dp._send_loop, daemon=True)
    writer.start()
    return dp, peer, writer


def test_a_switch_that_stops_reading_is_closed_at_the_cap_and_never_blocks_the_sender() -> None:
    dp, peer, writer = _datapath_pair()
    try:
        sent = 0
        while dp.send(b"x" * 65536):  # returns at once every time: no send blocks
            sent += 1
            assert sent < 10_000, "never refused"
        assert dp.out.peak <= dp.out.cap and dp.out.closed
        writer.join(10)
        assert not writer.is_alive()
        peer.settimeout(10)
        got = 0
        while chunk := peer.recv(1 << 20):  # what was written, then the end of the stream
            got += len(chunk)
        assert got == dp.out.written < sent * 65536
    finally:
        peer.close()
        dp.socket.close()


def test_a_slow_reader_outlasting_the_socket_timeout_gets_everything() -> None:
    dp, peer, writer = _datapath_pair()
    dp.socket.settimeout(0.05)  # os-ken's is 5 s: writes time out while the peer waits
    try:
        total = 8 << 20
        for _ in range(total // 65536):
            assert dp.send(b"y" * 65536)
        threading.Event().wait(0.5)  # ten socket timeouts without a byte read
        peer.settimeout(10)
        got = 0
        while got < total:
            chunk = peer.recv(1 << 20)
            assert chunk, f"closed after {got} bytes"
            got += len(chunk)
        assert got == total and not dp.out.closed
    finally:
        peer.close()
        dp.out.close()
        writer.join(5)
        dp.socket.close()


def test_activity_counts_what_the_peer_acknowledged_not_what_we_queued() -> None:
    dp, peer, writer = _datapath_pair()
    try:
        before = dp.activity()
        peer.sendall(b"z" * 100)  # unread by us: still a sign of life
        assert _eventually(lambda: dp.activity() >= before + 100)
        peer.shutdown(socket.SHUT_RDWR)
        peer.close()  # gone: what we send now is never acknowledged
        quiet = dp.activity()
        dp.send(b"e" * 50)
        assert _eventually(lambda: dp.out.written == 50)
        assert dp.activity() - quiet < 50
    finally:
        dp.out.close()
        writer.join(5)
        dp.socket.close()


def _eventually(cond: object, tries: int = 100) -> bool:
    for _ in range(tries):
        if cond():  # type: ignore[operator]
            return True
        threading.Event().wait(0.02)
    return False


def test_a_switch_still_reading_a_batch_gets_longer_before_it_counts_as_dead() -> None:
    from controller.ofconn import BUSY_FACTOR

    p = Prober(interval=2.0, misses=3)
    slow, dead = FakeProbed(), FakeProbed()
    slow.pending = True  # bytes for it wait unacknowledged: its echo reply waits behind them
    for c in (slow, dead):
        p._conns[id(c)] = (c, [0])
    for _ in range(3 * BUSY_FACTOR):
        p.tick()
    assert dead.expired and not slow.expired
    p.tick()
    assert slow.expired == [f"no sign of life for {2 * (3 * BUSY_FACTOR + 1)} s"]


def test_backlogged_while_a_batch_waits_for_a_switch_that_does_not_read() -> None:
    dp, peer, writer = _datapath_pair()
    try:
        assert not dp.backlogged()
        dp.send(b"e" * 8)  # an echo request's worth: not a batch
        assert _eventually(lambda: dp.out.written == 8) and not dp.backlogged()
        for _ in range(128):  # 8 MiB: more than the kernel's buffers hold
            dp.send(b"x" * 65536)
        assert _eventually(lambda: dp.backlogged())
        peer.settimeout(10)
        got = 0
        while got < 8 + 128 * 65536:
            got += len(peer.recv(1 << 20))
        assert _eventually(lambda: not dp.backlogged())
    finally:
        peer.close()
        dp.out.close()
        writer.join(5)
        dp.socket.close()
