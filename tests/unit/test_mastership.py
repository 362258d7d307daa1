"""Mastership assignment (pure): balanced, deterministic, and moving as few switches as any
balanced assignment must when members come and go."""

from __future__ import annotations

import random
from collections import Counter

from controller.mastership import assign, moves, next_generations


def _loads(result: dict[int, str | None]) -> Counter[str | None]:
    return Counter(result.values())


def _balanced(result: dict[int, str | None], live: list[str]) -> bool:
    loads = [_loads(result).get(m, 0) for m in live]
    return max(loads) - min(loads) <= 1


def test_first_assignment_spreads_evenly_and_is_deterministic() -> None:
    switches = list(range(1, 11))
    first = assign(switches, ["c", "a", "b"], {})
    assert sorted(_loads(first).values()) == [3, 3, 4]
    assert first == assign(list(reversed(switches)), ["b", "c", "a"], {})  # any order, same


def test_nobody_live_leaves_every_switch_without_master() -> None:
    assert assign([1, 2], [], {1: "a", 2: "b"}) == {1: None, 2: None}


def test_dead_member_switches_go_to_the_others_and_nothing_else_moves() -> None:
    before = assign(range(1, 13), ["a", "b", "c"], {})
    after = assign(range(1, 13), ["a", "c"], before)
    assert all(after[d] == before[d] for d, m in before.items() if m != "b")
    assert moves(before, after) == 4  # exactly b's four
    assert _balanced(after, ["a", "c"])


def test_a_joining_member_takes_only_its_share() -> None:
    before = assign(range(1, 13), ["a", "b"], {})
    after = assign(range(1, 13), ["a", "b", "c"], before)
    assert moves(before, after) == 4  # 12 / 3 = 4 to the newcomer, none between a and b
    assert {after[d] for d in after if after[d] != before[d]} == {"c"}
    assert _balanced(after, ["a", "b", "c"])


def test_moves_are_minimal_for_random_histories() -> None:
    """Whatever the previous owners, the moves equal the surplus above the fair shares: the
    lower bound of any balanced assignment."""
    rng = random.Random(7)
    for _ in range(300):
        members = [f"m{i}" for i in range(rng.randint(1, 6))]
        pool = members + ["dead1", "dead2", None]
        switches = rng.sample(range(1, 200), rng.randint(0, 40))
        current = {d: rng.choice(pool) for d in switches}
        live = rng.sample(members, rng.randint(1, len(members)))
        after = assign(switches, live, current)
        assert set(after) == set(switches)
        assert all(owner in live for owner in after.values())
        assert _balanced(after, live)
        # lower bound: switches without a live owner must move; plus each live member's
        # surplus above the largest share it could keep
        n, m = len(switches), len(live)
        base, extra = divmod(n, m)
        held = sorted((sum(1 for o in current.values() if o == x) for x in live), reverse=True)
        keepable = sum(min(h, base + (1 if i < extra else 0)) for i, h in enumerate(held))
        assert moves(current, after) == n - keepable
        assert assign(switches, live, after) == after  # stable: a second pass moves nothing


def test_generation_bumps_only_for_switches_that_changed_master() -> None:
    before = {1: "a", 2: "b", 3: None}
    after = {1: "a", 2: "a", 3: "b"}
    assert next_generations(before, after, {1: 4, 2: 9}) == {2: 10, 3: 1}
