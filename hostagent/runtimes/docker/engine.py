"""The agent's view of its Docker engine: a small API client and the event follower.

The follower reads ``GET /events`` (containers and networks) on a thread of its own. After
every (re)connection, so also after an engine restart, and after each container ``die``,
``destroy`` or network ``disconnect``, it asks the driver to reconcile: vxplane ports of
Docker endpoints that no running container holds are unplugged and unbound (kill -9 of a
container, an engine killed or restarted: no clean Leave/DeleteEndpoint came). A network
``create`` event of our driver makes (or adopts) the vxplane network of that name.

Calls into the engine never happen from inside a call of the engine into the plugin except
read-only list and network-inspect calls with a short timeout: the engine's container
inspect takes the container's lock, which a starting container holds while it waits for us.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("hostagent.docker")


def engine_socket(url: str) -> str:
    """``unix:///run/docker.sock`` (or a bare path) -> the socket path."""
    parts = urlsplit(url)
    if parts.scheme in ("", "unix"):
        return parts.path or url
    raise ValueError(f"engine URL {url!r}: only unix:// is supported")


class EngineClient:
    """Read-only calls on the engine API."""

    def __init__(self, url: str, timeout: float = 3.0) -> None:
        self.socket = engine_socket(url)
        self.timeout = timeout
        self._http = self._client()  # one pool for the short calls

    def _client(self, timeout: float | None = None) -> httpx.Client:
        # A unix socket needs no TLS: verify=False skips building an SSL context (the CA
        # bundle load cost ~16-30 ms per client, measured).
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.socket, verify=False),
            base_url="http://docker",
            timeout=timeout or self.timeout,
            verify=False,
        )

    def stream_client(self) -> httpx.Client:
        """A client without a read timeout, for the event stream."""
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=self.socket, verify=False),
            base_url="http://docker",
            timeout=httpx.Timeout(None, connect=3.0),
            verify=False,
        )

    def close(self) -> None:
        """Close the pool of the short calls."""
        self._http.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path``; None on 404; httpx.HTTPError when the engine is unreachable."""
        resp = self._http.get(path, params=params)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    def containers(self, all_: bool = True) -> list[dict[str, Any]]:
        """``GET /containers/json`` (a lock-free snapshot in the engine)."""
        return self.get("/containers/json", {"all": 1 if all_ else 0}) or []

    def network(self, network_id: str) -> dict[str, Any] | None:
        """``GET /networks/{id}`` or None."""
        return self.get(f"/networks/{network_id}")

    def networks(self, driver: str) -> list[dict[str, Any]]:
        """Networks of ``driver``."""
        return self.get("/networks", {"filters": json.dumps({"driver": [driver]})}) or []


class EventFollower:
    """Follows the engine's events and calls back; reconnects with backoff, forever."""

    def __init__(
        self,
        engine: EngineClient,
        on_connect: Callable[[], None],
        on_event: Callable[[dict[str, Any]], None],
    ) -> None:
        self.engine = engine
        self.on_connect = on_connect
        self.on_event = on_event
        self.connected = False
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resp: httpx.Response | None = None

    def start(self) -> None:
        """Start the follower thread."""
        self._thread = threading.Thread(target=self._loop, name="docker-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (closes the stream)."""
        self._stop.set()
        resp = self._resp
        if resp is not None:
            try:
                resp.close()
            except Exception:  # noqa: BLE001 - closing from another thread, best effort
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        backoff = 0.2
        filters = json.dumps({"type": ["container", "network"]})
        while not self._stop.is_set():
            try:
                with self.engine.stream_client() as http:
                    with http.stream("GET", "/events", params={"filters": filters}) as resp:
                        resp.raise_for_status()
                        self._resp = resp
                        self.connected = True
                        backoff = 0.2
                        log.info("docker events: following %s", self.engine.socket)
                        self._safe(self.on_connect)
                        for line in resp.iter_lines():
                            if self._stop.is_set():
                                break
                            if line.strip():
                                try:
                                    event = json.loads(line)
                                except ValueError:
                                    continue
                                self._safe(functools.partial(self.on_event, event))
            except (httpx.HTTPError, OSError) as exc:
                if self.connected:
                    log.warning("docker events: lost %s: %r", self.engine.socket, exc)
            finally:
                self._resp = None
                if self.connected:
                    self.reconnects += 1
                self.connected = False
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    @staticmethod
    def _safe(fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception:  # keep following; the next event or reconnect retries
            log.exception("docker events: handler failed")


class Debouncer:
    """Runs ``fn`` once on a timer thread ``delay`` s after the last ``kick``."""

    def __init__(self, fn: Callable[[], object], delay: float = 0.3) -> None:
        self.fn = fn
        self.delay = delay
        self._lock = threading.Lock()
        self._due = 0.0
        self._running = False

    def kick(self) -> None:
        with self._lock:
            self._due = time.monotonic() + self.delay
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._run, name="docker-reconcile", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                wait = self._due - time.monotonic()
                if wait <= 0:
                    self._running = False
                    break
            time.sleep(wait)
        try:
            self.fn()
        except Exception:
            log.exception("docker reconcile failed")
