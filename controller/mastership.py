"""PURE: which live controller masters which switch, moving as few switches as possible.

``assign(switches, live, current)`` keeps every switch with its current master while that
master is live and not above its fair share; the others (new switches, switches of a dead or
departed member, the surplus of an overloaded member) go to the least loaded live members.
Fair shares: with ``n`` switches and ``m`` members each member masters ``n // m`` or
``n // m + 1``; the members that already hold the most keep the larger shares, so the number
of moves is the least any balanced assignment needs. Ties break on the member id, so every
controller computing it from the same rows gets the same answer.

``moves(before, after)`` counts the switches whose master changed (each one costs a role
change and a flow dump on the switch); ``next_generations`` bumps the generation id of
exactly those, which is what makes a stale master's role request STALE at the switch.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping


def shares(current_load: Mapping[str, int], live: Collection[str], total: int) -> dict[str, int]:
    """How many switches each live member should master: ``total // m`` or one more; the
    ``total % m`` larger shares go to the members holding the most now (then lowest id)."""
    members = sorted(live)
    if not members:
        return {}
    base, extra = divmod(total, len(members))
    ranked = sorted(members, key=lambda m: (-current_load.get(m, 0), m))
    return {m: base + (1 if i < extra else 0) for i, m in enumerate(ranked)}


def assign(
    switches: Iterable[int], live: Collection[str], current: Mapping[int, str | None]
) -> dict[int, str | None]:
    """The master of every switch in ``switches`` (None for all when nobody is live).

    ``current`` is the master each switch had (None or a dead member: the switch is free)."""
    wanted = sorted(set(switches))
    if not live:
        return {dpid: None for dpid in wanted}
    alive = set(live)
    kept: dict[str, list[int]] = {m: [] for m in alive}
    free: list[int] = []
    for dpid in wanted:
        owner = current.get(dpid)
        if owner in alive:
            kept[owner].append(dpid)  # type: ignore[index]
        else:
            free.append(dpid)
    quota = shares({m: len(d) for m, d in kept.items()}, alive, len(wanted))
    result: dict[int, str | None] = {}
    for member, dpids in kept.items():
        keep, surplus = dpids[: quota[member]], dpids[quota[member] :]
        result.update({d: member for d in keep})
        free.extend(surplus)
    load = {m: sum(1 for o in result.values() if o == m) for m in alive}
    for dpid in sorted(free):
        member = min(sorted(alive), key=lambda m: (load[m] - quota[m], load[m], m))
        result[dpid] = member
        load[member] += 1
    return {dpid: result[dpid] for dpid in wanted}


def moves(before: Mapping[int, str | None], after: Mapping[int, str | None]) -> int:
    """How many switches change master (a switch gaining its first master counts)."""
    return sum(1 for dpid, owner in after.items() if before.get(dpid) != owner)


def next_generations(
    before: Mapping[int, str | None],
    after: Mapping[int, str | None],
    generations: Mapping[int, int],
) -> dict[int, int]:
    """The generation id of every switch whose master changed: one above its last
    (monotonic per switch, never reused: a switch remembers the highest it saw)."""
    return {
        dpid: generations.get(dpid, 0) + 1
        for dpid, owner in after.items()
        if before.get(dpid) != owner and owner is not None
    }
