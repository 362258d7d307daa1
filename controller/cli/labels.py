"""``KEY=VALUE`` options of the CLI (``--label``, ``--select``, ``--ingress-from``...)."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from controller.api.schemas import check_label_key, check_label_value


def parse_labels(values: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["app=web", "tier=front"]`` as a dict; ``typer.BadParameter`` (exit 2) on a value
    without ``=``, a key given twice, or a key or value outside the Kubernetes label syntax."""
    out: dict[str, str] = {}
    for text in values or ():
        key, eq, value = text.partition("=")
        if not eq:
            raise typer.BadParameter(f"{text!r}: write KEY=VALUE", param_hint=option)
        if key in out and out[key] != value:
            raise typer.BadParameter(
                f"{key!r} given twice with different values", param_hint=option
            )
        try:
            check_label_key(key)
            check_label_value(key, value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=option) from exc
        out[key] = value
    return out
