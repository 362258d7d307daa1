"""The agent's FastAPI app and the unix-socket server it runs on.

Errors are ``{"detail": ...}`` with 4xx (bad input, unknown network or namespace,
conflict), 503 (controller unreachable), 504 (not ready in time), 500 (local OVS/netlink
failure). Every reply carries ``X-Vxplane-Agent-Seconds``: how long the agent spent on the
request, so a caller (the CNI plugin's benchmark) can tell its own cost from the agent's.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hostagent.errors import AgentError, retry_headers
from vxcommon.retry import SERVER_KEEPALIVE

TIMING_HEADER = b"x-vxplane-agent-seconds"
SOCKET_MODE = 0o600  # uvicorn makes unix sockets 0666: only root may plug containers
GROUP_SOCKET_MODE = 0o660  # with --socket-group: root and that group


class _Timing:
    """ASGI middleware adding the agent's own handling time to every reply."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed(message: Any) -> None:
            if message["type"] == "http.response.start":
                spent = f"{time.perf_counter() - start:.6f}".encode()
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (TIMING_HEADER, spent)],
                }
            await send(message)

        await self.app(scope, receive, timed)


def create_app(title: str, routers: Iterable[APIRouter]) -> FastAPI:
    """A FastAPI app with the agent's error mapping and timing header, serving ``routers``."""
    app = FastAPI(title=title, version="1", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(AgentError)
    async def _agent_error(request: Request, exc: AgentError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status, content={"detail": exc.detail}, headers=retry_headers(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = [
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'body'}: {err.get('msg')}"
            for err in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": "; ".join(msgs)})

    for router in routers:
        app.include_router(router)
    app.add_middleware(_Timing)
    return app


def bind_unix(path: str, gid: int | None = None) -> socket.socket:
    """A listening unix socket at ``path``, mode 0600 (root only), or 0660 with group ``gid``.

    Linux gives the socket file the mode of the socket's inode at bind time (less the umask),
    so 0600 is set on the descriptor before ``bind``: no window where the file is wider. With
    a group, the file gets that group first and its group bits only then.
    """
    # A directory it makes is never writable by others, whatever the umask (else anyone
    # could replace the socket with their own).
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    if os.path.lexists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.fchmod(sock.fileno(), SOCKET_MODE)
        sock.bind(path)
        if gid is not None:
            os.chown(path, -1, gid)
            os.chmod(path, GROUP_SOCKET_MODE)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class UnixServer:
    """uvicorn serving ``app`` on the unix socket ``path`` (mode 0600, or 0660 with ``gid``)."""

    def __init__(self, app: Any, path: str, gid: int | None = None) -> None:
        self.path = path
        self.sock = bind_unix(path, gid)
        config = uvicorn.Config(
            app,
            fd=self.sock.fileno(),
            access_log=False,
            log_level="warning",
            timeout_keep_alive=int(SERVER_KEEPALIVE),  # clients drop theirs before (AgentClient)
        )
        self.server = uvicorn.Server(config)

    def run(self) -> None:
        """Serve until ``stop`` (blocks)."""
        try:
            self.server.run()
        finally:
            self.sock.close()
            if os.path.exists(self.path):
                os.unlink(self.path)

    def start(self) -> Callable[[], None]:
        """Serve on a thread; returns ``stop``."""
        thread = threading.Thread(target=self.run, name=f"serve {self.path}", daemon=True)
        thread.start()

        def stop() -> None:
            self.server.should_exit = True
            thread.join(timeout=10)

        return stop
