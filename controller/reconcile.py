"""PURE: the ordered changes that turn a switch's installed flows into the desired ones.

The installed model maps cookie -> Flow (or None when only the cookie is known, as after
a flow dump at reconnect). Cookies are content hashes (see ``flows.content_cookie``), so a
flow whose cookie is installed is installed exactly as desired.

Order is make-before-break: adds go first, deepest table first (a classifier flow never
points at a table that does not yet hold its targets), then deletes, classifier first.
An installed flow that an add replaces (same table, priority and match) is not deleted:
the add already overwrote it, and a delete by its old cookie would match nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.flows import Flow


@dataclass(frozen=True, slots=True)
class Changes:
    """Flows to add (in order), then cookies to delete (in order)."""

    adds: tuple[Flow, ...] = ()
    deletes: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.adds or self.deletes)

    def __len__(self) -> int:
        return len(self.adds) + len(self.deletes)


def diff(desired: Iterable[Flow], installed: Mapping[int, Flow | None]) -> Changes:
    """Changes that make ``installed`` equal to ``desired``."""
    wanted = {f.cookie: f for f in desired}
    adds = [f for c, f in wanted.items() if c not in installed]
    replaced = {f.key() for f in adds}
    deletes: list[tuple[int, int, int]] = []
    for cookie, old in installed.items():
        if cookie in wanted:
            continue
        if old is not None and old.key() in replaced:
            continue
        deletes.append((old.table if old else 255, -(old.priority if old else 0), cookie))
    adds.sort(key=lambda f: (-f.table, -f.priority, f.cookie))
    deletes.sort()
    return Changes(tuple(adds), tuple(c for _, _, c in deletes))


def apply(installed: Mapping[int, Flow | None], changes: Changes) -> dict[int, Flow | None]:
    """The installed model after ``changes`` were applied by the switch."""
    result = dict(installed)
    by_key = {f.key(): c for c, f in result.items() if f is not None}
    for f in changes.adds:
        old_cookie = by_key.get(f.key())
        if old_cookie is not None:
            result.pop(old_cookie, None)
        by_key[f.key()] = f.cookie
        result[f.cookie] = f
    for cookie in changes.deletes:
        result.pop(cookie, None)
    return result
