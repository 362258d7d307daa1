"""``KEY=VALUE`` options of the CLI: parsed, checked against the Kubernetes label syntax."""

from __future__ import annotations

import pytest
import typer

from controller.cli.labels import parse_labels


def test_pairs_become_a_map() -> None:
    got = parse_labels(["app=web", "example.com/tier=", "app=web"], "--label")
    assert got == {"app": "web", "example.com/tier": ""}
    assert parse_labels(None, "--label") == {}


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["app"], "write KEY=VALUE"),
        (["app=web", "app=db"], "given twice"),
        (["a b=web"], "not a valid label key"),
        (["app=-web"], "not a valid label value"),
        (["Example.com/app=web"], "prefix"),
    ],
)
def test_bad_pairs_are_usage_errors(values: list[str], words: str) -> None:
    with pytest.raises(typer.BadParameter) as caught:
        parse_labels(values, "--select")
    assert words in str(caught.value)
    assert caught.value.param_hint == "--select"
