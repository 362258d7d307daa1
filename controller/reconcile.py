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

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

from controller.flows import Flow, MatchValue

FlowKey = tuple[int, int, tuple[tuple[str, MatchValue], ...]]


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
    return _ordered(adds, deletes)


def _ordered(adds: list[Flow], deletes: list[tuple[int, int, int]]) -> Changes:
    adds.sort(key=lambda f: (-f.table, -f.priority, f.cookie))
    deletes.sort()
    return Changes(tuple(adds), tuple(c for _, _, c in deletes))


def diff_patch(
    installed: Mapping[int, Flow | None], gone: Iterable[Flow], new: Iterable[Flow]
) -> tuple[Changes, dict[FlowKey, tuple[int, Flow]]]:
    """``diff(desired', installed)`` for ``desired' = desired - gone + new`` when
    ``installed`` holds exactly ``desired``'s cookies, in O(len(gone) + len(new)) instead
    of O(len(desired)); also the installed flows the adds replace, by key (what ``apply``
    and the engine would otherwise find by indexing every installed flow). A flow of
    ``desired'`` replacing one of ``desired`` under the same key means the old one is in
    ``gone`` (a host's desired flows have distinct keys)."""
    adds = [f for f in new if f.cookie not in installed]
    replaced = {f.key() for f in adds}
    by_key: dict[FlowKey, tuple[int, Flow]] = {}
    deletes: list[tuple[int, int, int]] = []
    for f in gone:
        if f.cookie not in installed:
            continue
        old = installed[f.cookie]
        if old is not None:
            key = old.key()
            by_key[key] = (f.cookie, old)
            if key in replaced:
                continue
        deletes.append((old.table if old else 255, -(old.priority if old else 0), f.cookie))
    return _ordered(adds, deletes), by_key


def apply_patch(
    installed: MutableMapping[int, Flow | None],
    changes: Changes,
    replaced: Mapping[FlowKey, tuple[int, Flow]],
) -> None:
    """``apply`` in place, for changes from ``diff_patch`` (``replaced``: its second value):
    O(len(changes)), not a copy of the installed model."""
    for f in changes.adds:
        old = replaced.get(f.key())
        if old is not None:
            installed.pop(old[0], None)
        installed[f.cookie] = f
    for cookie in changes.deletes:
        installed.pop(cookie, None)


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
