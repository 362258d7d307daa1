"""PURE: the ordered changes that turn a switch's installed flows into the desired ones.

The installed model maps cookie -> Flow (or None when only the cookie is known, as after
a flow dump at reconnect). Cookies are content hashes (see ``flows.content_cookie``), so a
flow whose cookie is installed is installed exactly as desired.

Order is make-before-break: adds go first, deepest table first (a classifier flow never
points at a table that does not yet hold its targets), then deletes, classifier first.
An installed flow that an add replaces (same table, priority and match) is not deleted:
the add already overwrote it, and a delete by its old cookie would match nothing.

Memory at scale: a converged switch holds exactly its host's desired flows, so its installed
model need not be a dict of its own (about 36 bytes a flow: a dict entry and its share of
the table, and after a flow dump one int object per cookie, 36 more). :class:`Shared` is the
installed model as a read-only view of the desired tuple itself (sorted by cookie, as the
engine keeps it): 0 bytes a flow. :func:`settled` says which model a batch leaves behind:
the view when the switch then holds exactly what was desired, else the dict ``apply``
made. A model that must change in place (a rejected add) is copied into a dict first
(:func:`editable`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, ItemsView, Iterable, Iterator, Mapping, MutableMapping
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


def _cookie(f: Flow) -> int:
    return f.cookie


class Shared(Mapping[int, Flow | None]):
    """An installed model that is a desired tuple: the flows (sorted by cookie, no cookie
    twice) a converged switch holds, shared with the engine's desired model, not copied.
    Read-only; a lookup is a binary search."""

    __slots__ = ("flows",)

    def __init__(self, flows: tuple[Flow, ...]) -> None:
        self.flows = flows

    def _find(self, cookie: object) -> Flow | None:
        flows = self.flows
        if not isinstance(cookie, int):
            return None
        i = bisect_left(flows, cookie, key=_cookie)
        return flows[i] if i < len(flows) and flows[i].cookie == cookie else None

    def __getitem__(self, cookie: int) -> Flow | None:
        found = self._find(cookie)
        if found is None:
            raise KeyError(cookie)
        return found

    def __contains__(self, cookie: object) -> bool:
        return self._find(cookie) is not None

    def __iter__(self) -> Iterator[int]:
        return (f.cookie for f in self.flows)

    def __len__(self) -> int:
        return len(self.flows)

    def items(self) -> ItemsView[int, Flow | None]:
        return _SharedItems(self)

    def nbytes(self) -> int:
        """What this view costs beyond the tuple it shares (measurements)."""
        return 48


class _SharedItems(ItemsView[int, Flow | None]):
    """(cookie, flow) pairs straight from the tuple (not a binary search per key)."""

    _mapping: Shared

    def __iter__(self) -> Iterator[tuple[int, Flow | None]]:
        return ((f.cookie, f) for f in self._mapping.flows)


def settled(
    desired: tuple[Flow, ...], installed: Mapping[int, Flow | None]
) -> Mapping[int, Flow | None]:
    """``installed`` as the model to keep: a :class:`Shared` view of ``desired`` (a tuple
    sorted by cookie) when it holds exactly those cookies (cookies are content hashes, so
    the same flows), else ``installed`` itself."""
    if isinstance(installed, Shared) and installed.flows is desired:
        return installed
    return Shared(desired) if holds_exactly(desired, installed) else installed


def holds_exactly(desired: tuple[Flow, ...], cookies: Collection[int]) -> bool:
    """``cookies`` (an installed model, or the cookies of a flow dump) are exactly those of
    ``desired`` (whose cookies are distinct)."""
    return len(cookies) == len(desired) and all(f.cookie in cookies for f in desired)


def editable(installed: Mapping[int, Flow | None]) -> dict[int, Flow | None]:
    """``installed`` as a dict that may be changed in place (a copy of a shared view)."""
    return installed if isinstance(installed, dict) else dict(installed.items())


def diff(desired: Iterable[Flow], installed: Mapping[int, Flow | None]) -> Changes:
    """Changes that make ``installed`` equal to ``desired``."""
    if isinstance(installed, Shared) and installed.flows is desired:
        return Changes()  # converged on this very tuple: nothing to compare
    wanted = {f.cookie: f for f in desired}
    present = installed if isinstance(installed, dict) else set(installed)
    adds = [f for c, f in wanted.items() if c not in present]
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
    result = dict(installed.items())
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
