"""ControllerClient on a kept-alive connection that the server closes without answering.

A real httpx client against a scripted HTTP/1.1 server on loopback: the server answers a
connection's first request and keeps it open, then closes it on the second request without a
word, as a server does that times the connection out as idle just as the request arrives. An
idempotent request is sent again on a new connection and answered; a POST is not replayed.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from hostagent.client import ControllerClient, ControllerUnavailable
from vxcommon.retry import CLIENT_KEEPALIVE, SERVER_KEEPALIVE


class _DropsSecondRequest:
    """Loopback HTTP server: on each connection, answers the first request, then closes the
    connection when the second arrives. Records (connection number, method) per request."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen: list[tuple[int, str]] = []
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            n += 1
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn: socket.socket, n: int) -> None:
        buf = b""
        answered = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")
                length = 0
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "content-length":
                        length = int(value)
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                self.seen.append((n, lines[0].split()[0]))
                if answered:
                    return  # the idle close: no answer, the connection ends
                body = json.dumps({"status": "ok", "connection": n}).encode()
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                answered += 1

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def server() -> Iterator[_DropsSecondRequest]:
    srv = _DropsSecondRequest()
    yield srv
    srv.close()


def test_an_idempotent_request_is_sent_again_on_a_new_connection(
    server: _DropsSecondRequest,
) -> None:
    with ControllerClient(server.url, busy_retries=0) as client:
        first = client.healthz()
        second = client.healthz()  # meets the close on connection 1, answered on connection 2

    assert first["connection"] == 1 and second["connection"] == 2
    assert server.seen == [(1, "GET"), (1, "GET"), (2, "GET")]
    assert client.failovers == 0  # the same controller, not counted as its failure


def test_a_post_is_not_replayed(server: _DropsSecondRequest) -> None:
    with ControllerClient(server.url, busy_retries=0) as client:
        client.healthz()
        with pytest.raises(ControllerUnavailable, match="disconnected"):
            client.publish("blue", "a", 8080, 80)

    assert server.seen == [(1, "GET"), (1, "POST")]  # sent once: it may have been applied


def test_the_client_drops_idle_connections_before_the_server_does() -> None:
    assert CLIENT_KEEPALIVE < SERVER_KEEPALIVE / 2
    with ControllerClient("http://127.0.0.1:9", busy_retries=0) as client:
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool._keepalive_expiry == CLIENT_KEEPALIVE
