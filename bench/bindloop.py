"""The loop of one churn client process, shared by bench.writes and bench.scale: with an
agent token of its host, bind and unbind its endpoints through the API, single calls or
batches, from a start time (monotonic: one clock for all processes) for a duration; a 503 is
retried after its ``Retry-After`` and counted, each call's latency (retries included) kept."""

from __future__ import annotations

import time
from typing import Any

import httpx

from vxcommon.retry import advised_delay


def churn(
    url: str,
    token: str,
    host: str,
    names: list[str],
    ofports: list[int],
    start_at: float,
    seconds: float,
    batch: int,
    *,
    network: str,
    unbind_first: bool = False,
    tries: int = 20,
    timeout: float = 60.0,
    check_items: bool = False,
) -> dict[str, Any]:
    """Loop over ``names`` (bound at ``ofports`` of ``host``): bind then unbind each (two
    events, two calls), or with ``unbind_first`` unbind then bind again, so that every
    endpoint is bound again when the loop returns; with ``batch``, ``batch`` endpoints a
    ``POST /api/v1/bindings`` (2 x batch events, two calls), each item's status checked with
    ``check_items``. Returns events, latencies (s), retries and the monotonic end."""
    lat: list[float] = []
    events = retried = 0
    time.sleep(max(0.0, start_at - time.monotonic()))
    deadline = start_at + seconds
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=timeout) as api:

        def call(method: str, path: str, **kw: Any) -> httpx.Response:
            nonlocal retried
            t0 = time.perf_counter()
            for _ in range(tries):
                r = api.request(method, path, **kw)
                delay = advised_delay(r.status_code, r.headers.get("retry-after"))
                if delay is None:
                    break
                retried += 1
                time.sleep(delay)
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
            if check_items and method == "POST":
                bad = [o for o in r.json()["items"] if o["status"] != 200]
                if bad:
                    raise RuntimeError(f"churn batch item failed: {bad[0]}")
            return r

        i = 0
        while time.monotonic() < deadline:
            if batch:
                chunk = [(names[(i + k) % len(names)], ofports[(i + k) % len(names)])
                         for k in range(batch)]  # fmt: skip
                i += batch
                bind = [{"network": network, "name": n, "host": host, "ofport": p}
                        for n, p in chunk]  # fmt: skip
                unbind = [{"network": network, "name": n, "host": host, "unbind": True}
                          for n, _ in chunk]  # fmt: skip
                for items in (unbind, bind) if unbind_first else (bind, unbind):
                    call("POST", "/api/v1/bindings", json={"items": items})
                events += 2 * len(chunk)
            else:
                name, ofport = names[i % len(names)], ofports[i % len(names)]
                i += 1
                path = f"/api/v1/networks/{network}/endpoints/{name}/binding"
                steps: list[tuple[str, dict[str, Any]]] = [
                    ("PUT", {"json": {"host": host, "ofport": ofport}}),
                    ("DELETE", {"params": {"host": host}}),
                ]
                for method, kw in reversed(steps) if unbind_first else steps:
                    call(method, path, **kw)
                events += 2
    return {"events": events, "lat": lat, "retried": retried, "end": time.monotonic()}
