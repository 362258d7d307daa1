"""Network policies over the API: create (defaults as Kubernetes), list, show, delete, the
engine told of each write, bad input refused with nothing made, the model read back."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

from controller.model import PolicyPeer, PolicyPort, PolicyRule, policy_from_spec

NETS = "/api/v1/networks"
POLS = "/api/v1/networks/shop/policies"
DB_POLICY = {
    "name": "db-from-web",
    "selector": {"matchLabels": {"app": "db"}},
    "ingress": [
        {
            "from": [{"selector": {"matchLabels": {"app": "web"}}}, {"cidr": "10.9.0.0/16"}],
            "ports": [{"protocol": "tcp", "port": 5432}],
        }
    ],
}


@pytest.fixture
def shop(client: TestClient) -> TestClient:
    assert client.post(NETS, json={"name": "shop", "subnet": "10.5.0.0/24"}).status_code == 201
    return client


def test_create_list_show_delete(shop: TestClient, sync: RecordingSync) -> None:
    before = len(sync.notified)
    r = shop.post(POLS, json=DB_POLICY)
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["network"] == "shop" and made["name"] == "db-from-web"
    assert made["policy_types"] == ["Ingress"]  # Kubernetes' default without egress rules
    assert made["ingress"][0]["from"][1] == {"selector": None, "cidr": "10.9.0.0/16"}
    assert made["egress"] == []
    assert len(sync.notified) == before + 1  # flow-relevant: the engine is told
    egress = {"name": "web-out", "selector": {"matchLabels": {"app": "web"}}, "egress": [{}]}
    r = shop.post(POLS, json=egress)
    assert r.status_code == 201 and r.json()["policy_types"] == ["Ingress", "Egress"]
    assert [p["name"] for p in shop.get(POLS).json()] == ["db-from-web", "web-out"]
    assert shop.get(f"{POLS}/db-from-web").json() == made
    assert shop.delete(f"{POLS}/db-from-web").status_code == 204
    assert len(sync.notified) == before + 3
    assert shop.get(f"{POLS}/db-from-web").status_code == 404
    assert [p["name"] for p in shop.get(POLS).json()] == ["web-out"]


def test_the_model_reads_what_was_stored(shop: TestClient) -> None:
    stored = shop.post(POLS, json=DB_POLICY).json()
    policy = policy_from_spec(stored["name"], stored)
    assert policy.selector == (("app", "db"),)
    assert policy.egress is None  # not an Egress policy: sending is not restricted
    assert policy.ingress == (
        PolicyRule(
            peers=(
                PolicyPeer(selector=(("app", "web"),)),
                PolicyPeer(cidr=IPv4Network("10.9.0.0/16")),
            ),
            ports=(PolicyPort("tcp", 5432),),
        ),
    )
    deny = shop.post(POLS, json={"name": "deny", "policy_types": ["Ingress", "Egress"]}).json()
    assert policy_from_spec("deny", deny).ingress == () == policy_from_spec("deny", deny).egress


def test_taken_name_and_unknown_network(shop: TestClient) -> None:
    assert shop.post(POLS, json=DB_POLICY).status_code == 201
    again = shop.post(POLS, json=DB_POLICY)
    assert again.status_code == 409 and "already exists" in again.json()["detail"]
    missing = shop.post(f"{NETS}/nope/policies", json=DB_POLICY)
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    assert shop.get(f"{NETS}/nope/policies").status_code == 404
    assert shop.delete(f"{POLS}/other").status_code == 404


def test_deleting_the_network_deletes_its_policies(shop: TestClient) -> None:
    assert shop.post(POLS, json=DB_POLICY).status_code == 201
    assert shop.delete(f"{NETS}/shop").status_code == 204
    assert shop.post(NETS, json={"name": "shop", "subnet": "10.5.0.0/24"}).status_code == 201
    assert shop.get(POLS).json() == []


def _with(**change: Any) -> dict[str, Any]:
    return {**DB_POLICY, **change}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (_with(name="Bad Name"), "name"),
        (_with(selector={"matchLabels": {"a b": "x"}}), "not a valid label key"),
        (_with(selector={"app": "db"}), "selector.app"),
        (_with(ingress=[{"from": [{}]}]), "exactly one of selector or cidr"),
        (
            _with(ingress=[{"from": [{"cidr": "10.0.0.0/8", "selector": {}}]}]),
            "exactly one of selector or cidr",
        ),
        (_with(ingress=[{"from": [{"cidr": "10.0.0.1/8"}]}]), "host bits set"),
        (_with(ingress=[{"ports": [{"protocol": "icmp"}]}]), "protocol"),
        (_with(ingress=[{"ports": [{"port": 0}]}]), "port"),
        (_with(ingress=[{"ports": [{"port": 65536}]}]), "port"),
        (_with(ingress=[{"to": []}]), "to"),
        (_with(egress=[{}], policy_types=["Ingress"]), "lacks Egress"),
        (_with(policy_types=["Ingress", "Ingress"]), "twice"),
        (_with(policy_types=[]), "policy_types"),
        (_with(ingress=[{}] * 65), "ingress"),
    ],
)
def test_bad_policies_are_422_and_make_nothing(
    shop: TestClient, sync: RecordingSync, body: dict[str, Any], words: str
) -> None:
    before = len(sync.notified)
    r = shop.post(POLS, json=body)
    assert r.status_code == 422 and words in r.json()["detail"], r.text
    assert shop.get(POLS).json() == [] and len(sync.notified) == before
