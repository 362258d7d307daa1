"""The agent's Prometheus endpoint: ``GET /metrics`` on ``--metrics HOST:PORT`` (off by default).

The only TCP listener an agent may open, and never without a credential: the scraper sends
``Authorization: Bearer <token>``, a vxplane API token of any role (a viewer token is
enough: the same one Prometheus uses for the controller's ``/metrics``). The agent checks it
with the controller (``GET /api/v1/session`` carrying that token) and remembers a verdict for
``FRESH`` seconds; while the controller cannot be reached, a token it confirmed in the last
``STALE_OK`` seconds still works (metrics matter most when something is down), any other
gets 503. With ``--metrics-cert`` and ``--metrics-key`` it is served over TLS.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hostagent.metrics import AgentMetrics
from hostagent.settings import parse_address

log = logging.getLogger(__name__)

FRESH = 60.0  # s a verdict of the controller is reused
STALE_OK = 900.0  # s a confirmed token still works while the controller is unreachable
MAX_REMEMBERED = 1000
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"  # Prometheus' text format


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a scrape is refused: HTTP status and a sentence."""

    status: int
    detail: str


@dataclass(slots=True)
class _Verdict:
    ok: bool
    at: float


class TokenCheck:
    """Asks the controller whether a bearer token is live, and remembers its answers."""

    def __init__(
        self,
        controller: str,
        ca: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = 5.0,
    ) -> None:
        self._http = httpx.Client(base_url=controller, timeout=timeout, verify=ca or True)
        self._clock = clock
        self._seen: dict[str, _Verdict] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        """Close the connection to the controller."""
        self._http.close()

    def check(self, token: str) -> Refusal | None:
        """None if ``token`` may read the metrics, else why not."""
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        with self._lock:
            known = self._seen.get(key)
        if known is not None and now - known.at < FRESH:
            return None if known.ok else Refusal(401, "the controller does not take this token")
        try:
            resp = self._http.get("/api/v1/session", headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            if known is not None and known.ok and now - known.at < STALE_OK:
                return None
            log.warning("metrics: cannot check a token with the controller: %s", exc)
            return Refusal(503, "cannot check the token: the controller is unreachable")
        if resp.status_code >= 500:
            if known is not None and known.ok and now - known.at < STALE_OK:
                return None
            why = f"cannot check the token: the controller answered {resp.status_code}"
            return Refusal(503, why)
        ok = resp.status_code == 200
        with self._lock:
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen.clear()
            self._seen[key] = _Verdict(ok, now)
        return None if ok else Refusal(401, "the controller does not take this token")


def create_metrics_app(metrics: AgentMetrics, check: Callable[[str], Refusal | None]) -> FastAPI:
    """The app behind ``--metrics``: ``GET /metrics`` for a token ``check`` accepts."""
    app = FastAPI(title="vxplane agent metrics", openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/metrics")
    def scrape(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            refusal: Refusal | None = Refusal(
                401, "send 'Authorization: Bearer <token>': any vxplane API token, e.g. a viewer's"
            )
        else:
            refusal = check(token.strip())
        if refusal is not None:
            headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
            return JSONResponse({"detail": refusal.detail}, refusal.status, headers=headers)
        return Response(metrics.render(), media_type=TEXT_FORMAT)

    return app


class MetricsServer:
    """uvicorn serving the metrics app on a TCP address, on a thread of its own.

    The socket is bound here, in the constructor, so a taken or foreign address fails the
    agent's start with a clear error instead of a log line from a thread."""

    def __init__(
        self, app: FastAPI, address: str, cert: str | None = None, key: str | None = None
    ) -> None:
        host, port = parse_address(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(128)
        except OSError as exc:
            self.sock.close()
            raise SystemExit(f"vxplane agent: --metrics {address}: {exc.strerror}") from None
        self.address = self.sock.getsockname()[:2]
        config = uvicorn.Config(
            app, access_log=False, log_level="warning", ssl_certfile=cert, ssl_keyfile=key
        )
        self.server = uvicorn.Server(config)

    def start(self) -> Callable[[], None]:
        """Serve on a thread; returns ``stop``."""

        def serve() -> None:
            try:
                self.server.run(sockets=[self.sock])
            finally:
                self.sock.close()

        thread = threading.Thread(target=serve, name="metrics", daemon=True)
        thread.start()

        def stop() -> None:
            self.server.should_exit = True
            thread.join(timeout=10)

        return stop
