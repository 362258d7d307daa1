"""ControllerClient: the agent's httpx client for the controller's REST API (docs/api.md).

Endpoints come back as ``hostagent.model.Endpoint`` values. 4xx answers raise
``ControllerError`` carrying the API's ``detail`` and status; a controller that cannot be
reached (refused, timeout, 5xx) raises ``ControllerUnavailable``, which the agent treats as
"retry later". A 503 with ``Retry-After`` (the controller's write path is saturated or its
database busy: nothing was written) is retried after the advised delay, at most
``busy_retries`` times (``vxcommon.retry``); then ``ControllerUnavailable`` carries the last
advice as ``retry_after``, which the agent's own API passes on to the CNI plugin.

Several controllers (``--controller URL,URL``, plus the members the cluster advertises,
``set_members``): a request that could not even connect to the current one is sent to the
next at once, and the client stays with the one that answered. A request that reached a
controller and got no answer is replayed on the next only if it is idempotent (GET, PUT,
DELETE); a POST, or a 5xx answer, raises, and the next request starts with the next
controller. A connection closed before any answer is first retried once on the same
controller (a kept-alive connection the server closed as idle; the client's keep-alive is
shorter than the server's so that race stays rare: ``vxcommon.retry``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from json import loads as json_loads
from typing import Any
from urllib.parse import quote

import httpx

from hostagent.errors import AgentError, ControllerUnavailable
from hostagent.model import Endpoint, Network
from vxcommon.paging import collect
from vxcommon.retry import BUSY_RETRIES, CLIENT_KEEPALIVE, advised_delay
from vxcommon.tpoints import mark

API = "/api/v1"
NDJSON = "application/x-ndjson"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})  # replayed on the next controller


class ControllerError(AgentError):
    """The controller refused a request (4xx); ``status`` and ``detail`` are the API's own.

    ``endpoint``: on a 409 about one endpoint (a stale ``if_revision``, a bind elsewhere
    without ``move``, a failed conditional delete), the endpoint as it is now."""

    def __init__(self, status: int, detail: str, endpoint: Endpoint | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.endpoint = endpoint


def _seg(value: str) -> str:
    """One URL path segment (endpoint names may hold ``/`` and ``:``)."""
    return quote(value, safe="")


class ControllerClient:
    """Calls the controller API at ``base_url`` (for example ``http://198.18.0.254:8080``)
    with the agent's ``token``; ``ca`` checks an https:// controller's certificate."""

    def __init__(
        self,
        base_url: str | list[str],
        timeout: float = 10.0,
        token: str | None = None,
        ca: str | None = None,
        busy_retries: int = BUSY_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        given = base_url.split(",") if isinstance(base_url, str) else list(base_url)
        self.configured = [u.strip().rstrip("/") for u in given if u.strip()]
        if not self.configured:
            raise ValueError("no controller URL")
        self.urls = list(self.configured)
        self.base_url = self.urls[0]
        self.failovers = 0
        self.timeout = timeout
        self.busy_retries = busy_retries
        self.busy_waits: list[float] = []  # the Retry-After delays honoured so far
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(
            timeout=timeout,
            headers=headers,
            verify=ca or True,
            limits=httpx.Limits(keepalive_expiry=CLIENT_KEEPALIVE),
        )

    def set_members(self, api_urls: list[str]) -> None:
        """The API URLs of the cluster's live members: tried after the configured ones."""
        extra = [u.rstrip("/") for u in api_urls if u.rstrip("/") not in self.configured]
        self.urls = self.configured + sorted(set(extra))
        if self.base_url not in self.urls:
            self.base_url = self.urls[0]

    def _rotate(self) -> None:
        i = self.urls.index(self.base_url) if self.base_url in self.urls else -1
        self.base_url = self.urls[(i + 1) % len(self.urls)]
        self.failovers += 1

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ControllerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        on_line: Callable[[dict[str, Any]], None] | None = None,
    ) -> httpx.Response:
        for _ in range(self.busy_retries):
            resp = self._send(method, path, json, params, timeout, on_line)
            delay = advised_delay(resp.status_code, resp.headers.get("retry-after"))
            if delay is None:
                break
            self.busy_waits.append(delay)
            self._sleep(delay)
        else:
            resp = self._send(method, path, json, params, timeout, on_line)
        return self._check(method, path, resp)

    def _send(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, Any] | None,
        timeout: float | None,
        on_line: Callable[[dict[str, Any]], None] | None = None,
    ) -> httpx.Response:
        stale_retried = False
        attempt = 0
        while True:
            base = self.base_url
            try:
                request = self._http.build_request(
                    method,
                    base + path,
                    json=json,
                    # None, not {}: httpx replaces a URL's query (a next page's) with any dict
                    params={k: v for k, v in params.items() if v is not None} if params else None,
                    timeout=timeout or self.timeout,
                )
                if on_line is None:
                    return self._http.send(request)
                return self._streamed(request, on_line)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # never reached it
                self._rotate()
                attempt += 1
                if attempt == len(self.urls):
                    raise ControllerUnavailable(f"controller {base}: {exc!r}") from exc
            except httpx.RemoteProtocolError as exc:
                # The connection closed before any answer. On a kept-alive connection that is
                # the server closing it as idle just as the request went out (the pool then
                # drops it): an idempotent request is sent once more to the same controller, on
                # a new connection, before it counts as that controller's failure.
                if method in IDEMPOTENT and not stale_retried:
                    stale_retried = True
                    continue
                attempt = self._unanswered(method, base, attempt, exc)
            except httpx.HTTPError as exc:
                attempt = self._unanswered(method, base, attempt, exc)

    def _unanswered(self, method: str, base: str, attempt: int, exc: httpx.HTTPError) -> int:
        """Reached ``base``, then no answer (a paused or dying controller). The request may
        have been applied there: an idempotent one (GET, PUT, DELETE: a create-and-bind names
        its host and port, so a replay binds the same) is replayed on the next controller; a
        POST is not, but the next request goes on from there. Returns the next attempt."""
        self._rotate()
        attempt += 1
        if method not in IDEMPOTENT or attempt == len(self.urls):
            raise ControllerUnavailable(f"controller {base}: {exc!r}") from exc
        return attempt

    def _streamed(
        self, request: httpx.Request, on_line: Callable[[dict[str, Any]], None]
    ) -> httpx.Response:
        """Send ``request``; an NDJSON answer is read line by line, each line given to
        ``on_line`` as it arrives; the response returned holds the last line (any other
        answer is read whole and returned as it is)."""
        key = request.url.path.rsplit("/", 2)[-2]  # trace points: the endpoint's name
        mark("a_send", key)
        resp = self._http.send(request, stream=True)
        try:
            if not resp.headers.get("content-type", "").startswith(NDJSON):
                resp.read()
                return resp
            last: str | None = None
            for line in resp.iter_lines():
                if line.strip():
                    mark("a_rx2" if last else "a_rx1", key)
                    on_line(json_loads(line))
                    last = line
        finally:
            resp.close()
        if last is None:
            raise httpx.RemoteProtocolError("an NDJSON answer without a line", request=request)
        return httpx.Response(resp.status_code, content=last.encode(), request=request)

    def _check(self, method: str, path: str, resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 500:
            failed = self.base_url
            self._rotate()  # the next request starts with the next controller
            raise ControllerUnavailable(
                f"controller {failed}: {method} {path}: {resp.status_code} {resp.text[:200]}",
                retry_after=advised_delay(resp.status_code, resp.headers.get("retry-after")),
            )
        if resp.status_code >= 400:
            try:
                body = resp.json()
            except ValueError:
                body = None
            body = body if isinstance(body, dict) else {}
            detail = body.get("detail", resp.text)
            if not isinstance(detail, str):
                detail = str(detail)
            held = body.get("endpoint")
            endpoint = Endpoint.from_api(held) if isinstance(held, dict) else None
            raise ControllerError(resp.status_code, detail, endpoint)
        return resp

    # -- tasks (long poll) -----------------------------------------------------------------

    def take_tasks(self, host: str, wait: float) -> list[dict[str, Any]]:
        """``GET /api/v1/hosts/{host}/tasks?wait=S``: tasks for this host, waiting up to
        ``wait`` s for one (the read's own timeout is ``wait`` plus the usual)."""
        path = f"{API}/hosts/{_seg(host)}/tasks"
        resp = self._call("GET", path, params={"wait": wait}, timeout=wait + self.timeout)
        return list(resp.json())

    def answer_task(self, host: str, task_id: str, output: str, error: str | None) -> None:
        """``PUT /api/v1/hosts/{host}/tasks/{id}``: this host's answer to a task."""
        path = f"{API}/hosts/{_seg(host)}/tasks/{_seg(task_id)}"
        self._call("PUT", path, json={"output": output, "error": error})

    # -- health and hosts ----------------------------------------------------------------

    def healthz(self) -> dict[str, Any]:
        """``GET /healthz``."""
        return self._call("GET", "/healthz").json()

    def register_host(
        self,
        name: str,
        underlay_ip: str,
        dpid: int | None = None,
        tunnel_port: int | None = None,
        cluster_id: str | None = None,
        egress_ip: str | None = None,
        gateway_port: int | None = None,
        egress_ip6: str | None = None,
    ) -> dict[str, Any]:
        """Register or update this host (``PUT /api/v1/hosts/{name}``); returns the Host with
        the controller's ``cluster_id``. With ``cluster_id``, ControllerError 409 (nothing
        changed) if the controller's database is another cluster's."""
        body: dict[str, Any] = {"underlay_ip": underlay_ip}
        if dpid is not None:
            body["dpid"] = f"{dpid:016x}"
        if tunnel_port is not None:
            body["tunnel_port"] = tunnel_port
        if cluster_id is not None:
            body["cluster_id"] = cluster_id
        if egress_ip is not None and gateway_port is not None:
            body.update(egress_ip=egress_ip, gateway_port=gateway_port)
            if egress_ip6 is not None:
                body["egress_ip6"] = egress_ip6
        return self._call("PUT", f"{API}/hosts/{_seg(name)}", json=body).json()

    def list_controllers(self) -> list[dict[str, Any]]:
        """``GET /api/v1/controllers``: the cluster's members (404 from an older controller)."""
        members = self._call("GET", f"{API}/controllers").json()
        return [m for m in members if isinstance(m, dict)]

    def heartbeat(self, name: str) -> dict[str, Any]:
        """``POST /api/v1/hosts/{name}/heartbeat``; ControllerError 404 if the host is unknown."""
        return self._call("POST", f"{API}/hosts/{_seg(name)}/heartbeat").json()

    def get_network(self, name: str) -> Network:
        """``GET /api/v1/networks/{name}``."""
        return Network.from_api(self._call("GET", f"{API}/networks/{_seg(name)}").json())

    def create_network(
        self, name: str, subnet: str, gateway: str | None = None, subnet6: str | None = None
    ) -> tuple[Network, bool]:
        """Create network ``name`` (dual stack with ``subnet6``) or find it; returns
        (Network, created-by-this-call).

        An existing network is returned as is (the caller compares its subnets)."""
        body: dict[str, Any] = {"name": name, "subnet": subnet}
        if gateway is not None:
            body["gateway"] = gateway
        if subnet6 is not None:
            body["subnet6"] = subnet6
        try:
            return Network.from_api(self._call("POST", f"{API}/networks", json=body).json()), True
        except ControllerError as exc:
            if exc.status != 409:
                raise
            try:
                return self.get_network(name), False
            except ControllerError:
                raise exc from None

    def delete_network(self, name: str) -> None:
        """``DELETE /api/v1/networks/{name}`` (409 while endpoints are bound)."""
        self._call("DELETE", f"{API}/networks/{_seg(name)}")

    def get_host(self, name: str) -> dict[str, Any]:
        """``GET /api/v1/hosts/{name}``."""
        return self._call("GET", f"{API}/hosts/{_seg(name)}").json()

    # -- publications -------------------------------------------------------------------

    def publish(
        self, network: str, endpoint: str, host_port: int, port: int, proto: str = "tcp"
    ) -> dict[str, Any]:
        """``POST /api/v1/networks/{network}/publications`` (the same one again is found)."""
        body = {"endpoint": endpoint, "host_port": host_port, "port": port, "proto": proto}
        return self._call("POST", f"{API}/networks/{_seg(network)}/publications", json=body).json()

    def unpublish(
        self, network: str, proto: str, host_port: int, endpoint: str | None = None
    ) -> None:
        """``DELETE .../publications/{proto}/{host_port}``; with ``endpoint``, only if it is
        published for that endpoint (409 otherwise)."""
        self._call(
            "DELETE",
            f"{API}/networks/{_seg(network)}/publications/{proto}/{host_port}",
            params={"endpoint": endpoint} if endpoint is not None else None,
        )

    # -- endpoints ------------------------------------------------------------------------

    def create_endpoint(
        self, network: str, name: str, ip: str | None = None, host: str | None = None
    ) -> tuple[Endpoint, bool]:
        """Create or find endpoint ``name``; returns (Endpoint, created-by-this-call)."""
        body: dict[str, Any] = {"name": name}
        if ip is not None:
            body["ip"] = ip
        if host is not None:
            body["host"] = host
        resp = self._call("POST", f"{API}/networks/{_seg(network)}/endpoints", json=body)
        return Endpoint.from_api(resp.json()), resp.status_code == 201

    def get_endpoint(self, network: str, name: str, wait_ready: float | None = None) -> Endpoint:
        """``GET`` one endpoint, optionally waiting up to ``wait_ready`` s for it to be ready."""
        resp = self._call(
            "GET",
            f"{API}/networks/{_seg(network)}/endpoints/{_seg(name)}",
            params={"wait_ready": wait_ready},
            timeout=self.timeout + (wait_ready or 0),
        )
        return Endpoint.from_api(resp.json())

    def bind(
        self,
        network: str,
        name: str,
        host: str,
        ofport: int,
        port_name: str | None = None,
        *,
        create: bool = False,
        ip: str | None = None,
        labels: dict[str, str] | None = None,
        wait_ready: float | None = None,
        if_revision: int | None = None,
        move: bool = False,
        on_bound: Callable[[Endpoint], None] | None = None,
    ) -> tuple[Endpoint, bool]:
        """Bind the endpoint to ``host``'s ``ofport``; with ``create`` make it first if the
        name is new, all in one request. Returns (Endpoint, created-by-this-call).

        ``on_bound`` (with ``wait_ready``): called with the endpoint as bound (its address)
        as soon as the write committed, while the controller still waits for the flows
        (``stream=true``: the answer is NDJSON, that line then the endpoint after the wait;
        ``on_bound`` sees each); a controller that does not stream answers once, and
        ``on_bound`` is then not called.

        An endpoint bound to another host or port is moved only with ``if_revision`` (only if
        that is still its revision; 0: a new name) or ``move``; otherwise, and on a stale
        ``if_revision``, ControllerError 409 carrying the endpoint, and nothing changes."""
        body: dict[str, Any] = {"host": host, "ofport": ofport}
        if if_revision is not None:
            body["if_revision"] = if_revision
        if move:
            body["move"] = True
        if port_name is not None:
            body["port_name"] = port_name
        if ip is not None:
            body["ip"] = ip
        if labels is not None:  # {} clears them; None keeps them
            body["labels"] = labels
        stream = on_bound is not None and wait_ready is not None
        resp = self._call(
            "PUT",
            f"{API}/networks/{_seg(network)}/endpoints/{_seg(name)}/binding",
            json=body,
            params={
                "wait_ready": wait_ready,
                "create": "true" if create else None,
                "stream": "true" if stream else None,
            },
            timeout=self.timeout + (wait_ready or 0),
            on_line=(lambda doc: on_bound(Endpoint.from_api(doc))) if on_bound and stream else None,
        )
        return Endpoint.from_api(resp.json()), resp.status_code == 201

    def unbind(self, network: str, name: str, host: str | None = None) -> Endpoint:
        """Unbind the endpoint (a no-op at the controller if it is bound elsewhere)."""
        resp = self._call(
            "DELETE",
            f"{API}/networks/{_seg(network)}/endpoints/{_seg(name)}/binding",
            params={"host": host},
        )
        return Endpoint.from_api(resp.json())

    def delete_endpoint(
        self,
        network: str,
        name: str,
        *,
        if_unbound: bool = False,
        if_revision: int | None = None,
    ) -> None:
        """Forget the endpoint and free its address. ``if_unbound`` / ``if_revision``: only if
        it is bound to no host / still at that revision, checked in the deleting transaction
        (else ControllerError 409 and nothing changes)."""
        self._call(
            "DELETE",
            f"{API}/networks/{_seg(network)}/endpoints/{_seg(name)}",
            params={"if_unbound": "true" if if_unbound else None, "if_revision": if_revision},
        )

    def list_endpoints(
        self, network: str | None = None, host: str | None = None, state: str | None = None
    ) -> list[Endpoint]:
        """``GET /api/v1/endpoints`` with optional filters, every page."""
        docs = collect(
            lambda path, params: self._call("GET", path, params=dict(params) if params else None),
            f"{API}/endpoints",
            {"network": network, "host": host, "state": state},
        )
        return [Endpoint.from_api(doc) for doc in docs]
