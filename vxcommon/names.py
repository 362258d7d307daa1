"""Name rules for networks, hosts, endpoints and interfaces: one definition for every part.

The controller validates every name it stores; the agent, the CNI plugin and the Docker
driver check the same rules before they call it, so a bad name is refused where it enters
with the same message. Only ``re`` is imported: the CNI plugin loads this on every exec.
"""

from __future__ import annotations

import re

NAME_MAX = 63
ENDPOINT_NAME_MAX = 255
IFNAME_MAX = 15

NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.-]{{0,{NAME_MAX - 1}}}$"
ENDPOINT_NAME_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9_.:/-]{{0,{ENDPOINT_NAME_MAX - 1}}}$"
IFNAME_PATTERN = rf"^[A-Za-z0-9_.-]{{1,{IFNAME_MAX}}}$"

_NAME_RE = re.compile(NAME_PATTERN)
_ENDPOINT_NAME_RE = re.compile(ENDPOINT_NAME_PATTERN)
_IFNAME_RE = re.compile(IFNAME_PATTERN)
# Suffixes that would make ``/networks/N/endpoints/{name}/...`` ambiguous.
RESERVED_SUFFIXES = ("/binding", "/history")


def name_error(value: object) -> str | None:
    """Why ``value`` is not a valid network or host name, or None if it is."""
    if isinstance(value, str) and _NAME_RE.fullmatch(value):
        return None
    return (
        f"{value!r} is not a valid name: use 1 to {NAME_MAX} letters, digits, '_', '.' or '-', "
        "starting with a letter or digit"
    )


def endpoint_name_error(value: object) -> str | None:
    """Why ``value`` is not a valid endpoint name, or None if it is."""
    if not isinstance(value, str) or not _ENDPOINT_NAME_RE.fullmatch(value):
        return (
            f"{value!r} is not a valid endpoint name: use 1 to {ENDPOINT_NAME_MAX} letters, "
            "digits, '_', '.', '-', ':' or '/', starting with a letter or digit"
        )
    if value.endswith(RESERVED_SUFFIXES) or "//" in value or value.endswith("/"):
        return f"{value!r} is not a valid endpoint name: it would be ambiguous in URLs"
    if any(segment in (".", "..") for segment in value.split("/")):
        return (
            f"{value!r} is not a valid endpoint name: a '.' or '..' segment between slashes "
            "would be read as another path by URL-normalising clients"
        )
    return None


def ifname_error(value: object) -> str | None:
    """Why ``value`` is not a valid Linux interface name, or None if it is."""
    if isinstance(value, str) and _IFNAME_RE.fullmatch(value) and value not in (".", ".."):
        return None
    return f"{value!r} is not a valid interface name: 1 to {IFNAME_MAX} of A-Z a-z 0-9 _ . -"


def check_name(value: str) -> str:
    """``value`` if it is a valid network or host name, else ValueError saying why."""
    error = name_error(value)
    if error:
        raise ValueError(error)
    return value


def check_endpoint_name(value: str) -> str:
    """``value`` if it is a valid endpoint name, else ValueError saying why."""
    error = endpoint_name_error(value)
    if error:
        raise ValueError(error)
    return value


def check_ifname(value: str) -> str:
    """``value`` if it is a valid interface name, else ValueError saying why."""
    error = ifname_error(value)
    if error:
        raise ValueError(error)
    return value
