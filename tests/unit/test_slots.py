"""tests/slots.py: no two lab modules, in no two slots (0..9), share a port, an underlay or a
name prefix. The modules' calls are read from their source (``ast``), so a module that takes
another's port block, or an underlay base another already has, fails here."""

from __future__ import annotations

import ast
from collections import defaultdict
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from tests import slots

TESTS = Path(__file__).resolve().parents[1]
SLOTS = range(10)
EPHEMERAL_FIRST = 32768  # Linux's default ip_local_port_range starts here (free_port's range)


def _calls(name: str) -> list[tuple[str, list[object]]]:
    """Every ``slots.<name>(constant, ...)`` in tests/: (file, constant arguments)."""
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in ("slots.py", "test_slots.py"):
            continue
        text = path.read_text()
        bare = f"from tests.slots import {name}" in text  # called as name(...)
        for node in ast.walk(ast.parse(text, str(path))):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            if isinstance(fn, ast.Attribute):
                if fn.attr != name or not (
                    isinstance(fn.value, ast.Name) and fn.value.id == "slots"
                ):
                    continue
            elif not (bare and isinstance(fn, ast.Name) and fn.id == name):
                continue
            args = [a.value if isinstance(a, ast.Constant) else None for a in node.args]
            assert None not in args, f"{path}: slots.{name} with a non-constant argument"
            found.append((str(path.relative_to(TESTS)), args))
    return found


def _in_slot(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    monkeypatch.setenv("VXTEST_SLOT", str(n))


def test_every_module_and_slot_has_ports_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    owner: dict[int, tuple[str, int]] = {}
    for n in SLOTS:
        _in_slot(monkeypatch, n)
        for module in slots.PORT_MODULES:
            for port in slots.ports(module, slots.PORTS_PER_MODULE):  # the whole block
                assert 1024 <= port < EPHEMERAL_FIRST, (module, n, port)
                assert port not in owner, f"{module} slot {n} and {owner[port]} share {port}"
                owner[port] = (module, n)
    assert len(owner) == len(SLOTS) * len(slots.PORT_MODULES) * slots.PORTS_PER_MODULE


def test_each_port_block_is_claimed_by_one_module_within_its_size() -> None:
    claims: dict[str, set[str]] = defaultdict(set)
    for path, (module, count) in _calls("ports"):
        assert module in slots.PORT_MODULES, f"{path}: {module!r} is not in PORT_MODULES"
        assert isinstance(count, int) and 1 <= count <= slots.PORTS_PER_MODULE, path
        claims[str(module)].add(path)
    shared = {m: sorted(paths) for m, paths in claims.items() if len(paths) > 1}
    assert not shared, f"one port block taken by several files: {shared}"
    assert claims, "no module asks tests/slots.py for ports (the scan found nothing)"
    assert len(set(slots.PORT_MODULES)) == len(slots.PORT_MODULES)


def test_ports_refuses_an_unknown_module_or_too_many() -> None:
    with pytest.raises(ValueError, match="PORT_MODULES"):
        slots.ports("test_nowhere", 2)
    with pytest.raises(ValueError, match="a module has"):
        slots.ports(slots.PORT_MODULES[0], slots.PORTS_PER_MODULE + 1)


def test_underlays_and_prefixes_do_not_overlap_across_modules_and_slots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    underlays = _calls("underlay")
    prefixes = _calls("prefix")
    assert underlays and prefixes, "the scan found no calls"
    nets: list[tuple[IPv4Network, str, int]] = []
    names: dict[str, tuple[str, int]] = {}
    for n in SLOTS:
        _in_slot(monkeypatch, n)
        for path, (base,) in underlays:
            net = IPv4Network(slots.underlay(str(base)))
            assert net.subnet_of(IPv4Network("198.18.0.0/15")), (path, n, net)
            for other, where, m in nets:
                assert not net.overlaps(other), f"{path} slot {n} {net} and {where} slot {m}"
            nets.append((net, path, n))
        for path, (base,) in prefixes:
            name = slots.prefix(str(base))
            seen = names.setdefault(name, (path, n))
            assert seen[0] == path, f"prefix {name}: {path} slot {n} and {seen}"
