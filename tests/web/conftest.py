"""Fixtures for the dashboard in real headless Chromium (Debian's ``chromium`` + Playwright).

The browser is Debian's, started by Playwright through ``executable_path``: nothing is ever
downloaded (``playwright install`` is never run). Without chromium, Playwright or root (the
lab) the tests skip with the reason; under CI (``CI`` set) they fail instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import missing_lab_prerequisites, require

CHROMIUM = os.environ.get("VXPLANE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def missing_prerequisites() -> str | None:
    """Why the dashboard tests cannot run here, or None."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found: install Debian's chromium (scripts/install-deps.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[dev]'"
    return missing_lab_prerequisites()


@pytest.fixture(scope="session")
def web_prerequisites() -> None:
    """Skip (with the reason) when the browser or the lab cannot run; under CI, fail."""
    require(missing_prerequisites(), "the dashboard tests")


@pytest.fixture(scope="module")
def browser(web_prerequisites: None) -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


class ConsoleLog:
    """Console errors and uncaught exceptions of one page (``allow`` the expected ones)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.allowed: list[re.Pattern[str]] = []

    def allow(self, pattern: str) -> None:
        """Errors matching ``pattern`` are expected (a 4xx the test provokes on purpose)."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        """The errors no ``allow`` pattern matches."""
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]

    def attach(self, page: Any) -> None:
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type in ("error", "assert")
                else None
            ),
        )
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on(
            "requestfailed",
            lambda req: (
                self.errors.append(f"request failed: {req.url} {req.failure}")
                if "/api/v1/events" not in req.url  # the stream is cut when the page closes
                else None
            ),
        )
