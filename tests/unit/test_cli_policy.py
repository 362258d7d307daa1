"""``vxplane policy create`` options as the API body (no server: the pure translation)."""

from __future__ import annotations

import pytest
import typer

from controller.api.schemas import PolicyCreate
from controller.cli.policies import parse_port, policy_body, summary


def test_ingress_from_labels_and_cidrs_on_ports() -> None:
    body = policy_body(
        "db", ["app=db", "tier=back"], ["app=web"], None, ["10.9.0.0/16"], None, ["tcp/5432"]
    )
    assert body == {
        "name": "db",
        "selector": {"matchLabels": {"app": "db", "tier": "back"}},  # --select ANDed
        "policy_types": ["Ingress"],
        "ingress": [
            {
                "from": [{"selector": {"matchLabels": {"app": "web"}}}, {"cidr": "10.9.0.0/16"}],
                "ports": [{"protocol": "tcp", "port": 5432}],
            }
        ],
    }
    PolicyCreate.model_validate(body)  # the API takes it as it is
    assert summary(PolicyCreate.model_validate(body).model_dump(mode="json", by_alias=True)) == (
        "app=db,tier=back accepts app=web|10.9.0.0/16 on tcp/5432"
    )


def test_egress_only_and_deny_all() -> None:
    out = policy_body("w", ["app=web"], None, ["app=db"], None, ["198.18.0.0/15"], ["udp/53"])
    assert out["policy_types"] == ["Egress"] and "ingress" not in out
    assert out["egress"][0]["to"][1] == {"cidr": "198.18.0.0/15"}
    PolicyCreate.model_validate(out)
    deny = policy_body("d", ["app=db"], None, None, None, None, None)
    assert deny["policy_types"] == ["Ingress"] and deny["ingress"] == []
    assert summary(PolicyCreate.model_validate(deny).model_dump(mode="json", by_alias=True)) == (
        "app=db accepts nothing"
    )
    ports_only = policy_body("p", None, None, None, None, None, ["80"])
    assert ports_only["ingress"] == [{"from": [], "ports": [{"protocol": "tcp", "port": 80}]}]


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("tcp/80", ("tcp", 80)),
        ("udp/53", ("udp", 53)),
        ("tcp", ("tcp", None)),
        ("443", ("tcp", 443)),
    ],
)
def test_ports(text: str, want: tuple[str, int | None]) -> None:
    got = parse_port(text)
    assert (got["protocol"], got["port"]) == want


@pytest.mark.parametrize("text", ["icmp/1", "tcp/x", "tcp/0", "tcp/70000", "sctp"])
def test_bad_ports_are_usage_errors(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_port(text)
