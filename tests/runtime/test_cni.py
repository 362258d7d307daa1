"""The ``vxplane-cni`` executable driven as a runtime drives it, on a real 2-host lab.

Each call execs the installed binary inside the emulated host's network namespace with the
``CNI_*`` environment and the configuration on stdin, against real container namespaces;
one network is dual stack (results with both families, IPv6 between the hosts).
Prefix ``vxr-``, underlay 198.18.8.0/24, ports from tests/slots.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from hostagent.plug import device_names
from tests import slots
from vxcommon.addr6 import derive_ip6, link_local
from vxlab.lab import Lab
from vxlab.launch import controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

PREFIX = slots.prefix("vxr-")
UNDERLAY = slots.underlay("198.18.8.0/24")
API_PORT, OF_PORT = slots.ports("test_cni", 2)
SUBNET = "10.40.0.0/24"
TEAL6 = "fd00:41::/64"  # the dual-stack network's IPv6 prefix
CNI_BIN = Path(sys.executable).with_name("vxplane-cni")
H1, H2 = f"{PREFIX}h1", f"{PREFIX}h2"


@dataclass
class Stack:
    lab: Lab
    api: httpx.Client
    namespaces: list[str] = field(default_factory=list)

    def netns(self, name: str) -> str:
        """A fresh container namespace (removed by the fixture); returns its path."""
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.namespaces.append(name)
        return f"/run/netns/{name}"

    def cni(
        self,
        host: str,
        command: str | None,
        conf: dict[str, Any] | bytes,
        cid: str | None = None,
        netns: str | None = None,
        ifname: str | None = "eth0",
        args: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Exec the plugin in ``host``'s namespace; (exit code, decoded stdout or None)."""
        environ = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CNI_PATH": str(CNI_BIN.parent),
            "VXPLANE_AGENT_SOCKET": self.lab.host_paths(host).agent_sock,
        }
        if os.environ.get("PYTHONPATH"):  # the code under test, not the venv's install
            environ["PYTHONPATH"] = os.environ["PYTHONPATH"]
        for key, value in (
            ("CNI_COMMAND", command), ("CNI_CONTAINERID", cid), ("CNI_NETNS", netns),
            ("CNI_IFNAME", ifname), ("CNI_ARGS", args),
        ):  # fmt: skip
            if value is not None:
                environ[key] = value
        environ.update(env or {})
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        done = subprocess.run(
            ["nsenter", f"--net=/run/netns/{host}", str(CNI_BIN)],
            input=stdin,
            env=environ,
            capture_output=True,
            timeout=90,
        )
        out = done.stdout.decode().strip()
        return done.returncode, json.loads(out) if out else None

    def ping(self, netns: str, ip: str, count: int = 1) -> bool:
        """One ping (IPv4 or IPv6, by the address) from ``netns``."""
        family = "-6" if ":" in ip else "-4"
        argv = ["ip", "netns", "exec", netns, "ping", family, "-c", str(count), "-W", "2", "-q",
                ip]  # fmt: skip
        return subprocess.run(argv, capture_output=True).returncode == 0

    def endpoint(self, network: str, name: str) -> dict[str, Any] | None:
        resp = self.api.get(f"/api/v1/networks/{network}/endpoints/{name}")
        return None if resp.status_code == 404 else resp.raise_for_status().json()

    def ports(self, host: str) -> list[str]:
        return sorted(self.lab.ports(host))

    def flows_mentioning(self, ip: str) -> list[str]:
        found = []
        for host in (H1, H2):
            out = subprocess.run(
                ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.lab.ofctl_target(host)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            found += [f for f in out.splitlines() if f"={ip}," in f or f"={ip} " in f]
        return found

    def state(self) -> tuple[list[str], list[str], list[str]]:
        """Ports on both hosts and endpoint names: what a failed call must leave unchanged."""
        eps = sorted(e["name"] for e in self.api.get("/api/v1/endpoints").json())
        return self.ports(H1), self.ports(H2), eps


def _link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return subprocess.run(argv, capture_output=True).returncode == 0


def conf(name: str = "blue", version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": name, "type": "vxplane-cni", **extra}


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not CNI_BIN.exists():
        pytest.fail(f"{CNI_BIN} is not installed: pip install -e . (pyproject [project.scripts])")
    with controller_and_lab(
        tmp_path_factory.mktemp("cni"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=2,
    ) as (lab, _ctl, api):
        st = Stack(lab, api)
        try:
            api.post("/api/v1/networks", json={"name": "blue", "subnet": SUBNET}).raise_for_status()
            yield st
        finally:
            for ns in st.namespaces:
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_add_ping_check_del(stack: Stack) -> None:
    a_ns, b_ns = stack.netns("vxr-a"), stack.netns("vxr-b")
    rc, a = stack.cni(H1, "ADD", conf(), cid="ctr-a", netns=a_ns)
    assert rc == 0, a
    pod_args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=42"
    rc, b = stack.cni(H2, "ADD", conf(), cid="ctr-b", netns=b_ns, args=pod_args)
    assert rc == 0, b
    # the result object of CNI 1.1
    assert a["cniVersion"] == "1.1.0"
    assert a["interfaces"] == [
        {"name": "eth0", "mac": a["interfaces"][0]["mac"], "sandbox": a_ns, "mtu": 1450}
    ]
    a_ip, prefix = a["ips"][0]["address"].split("/")
    assert prefix == "24" and a["ips"][0] == {
        "address": f"{a_ip}/24", "gateway": "10.40.0.1", "interface": 0
    }  # fmt: skip
    assert a["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.40.0.1"}]
    b_ip = b["ips"][0]["address"].split("/")[0]
    web = stack.endpoint("blue", "default/web")
    assert web is not None and web["state"] == "ready" and web["host"] == H2 and web["ip"] == b_ip
    assert stack.endpoint("blue", "ctr-a")["mac"] == a["interfaces"][0]["mac"]  # type: ignore[index]
    # ADD returned only with flows installed: the very first ping is answered
    assert stack.ping("vxr-a", b_ip) and stack.ping("vxr-b", a_ip)
    # ADD again: same answer, nothing new
    before = stack.state()
    rc, again = stack.cni(H1, "ADD", conf(), cid="ctr-a", netns=a_ns)
    assert rc == 0 and again == a and stack.state() == before

    rc, out = stack.cni(H1, "CHECK", conf(prevResult=a), cid="ctr-a", netns=a_ns)
    assert (rc, out) == (0, None)
    wrong = json.loads(json.dumps(a))
    wrong["interfaces"][0]["mac"] = "0a:58:0a:28:00:fe"
    rc, out = stack.cni(H1, "CHECK", conf(prevResult=wrong), cid="ctr-a", netns=a_ns)
    assert rc != 0 and out["code"] == 101, out
    subprocess.run(["ip", "-n", "vxr-a", "addr", "del", f"{a_ip}/24", "dev", "eth0"], check=True)
    rc, out = stack.cni(H1, "CHECK", conf(prevResult=a), cid="ctr-a", netns=a_ns)
    assert rc != 0 and out["code"] == 101 and a_ip in out["msg"], out

    host_if, _ = device_names("blue", "ctr-a")
    assert host_if in stack.ports(H1)
    for _ in range(2):  # DEL, then DEL again: both succeed
        rc, out = stack.cni(H1, "DEL", conf(), cid="ctr-a", netns=a_ns)
        assert (rc, out) == (0, None)
    assert host_if not in stack.ports(H1) and not _link_exists(host_if, H1)
    assert not _link_exists("eth0", "vxr-a")
    assert stack.endpoint("blue", "ctr-a") is None  # the address is released
    # DEL after the namespace is gone, without CNI_NETNS: still unplugs and releases
    subprocess.run(["ip", "netns", "del", "vxr-b"], check=True)
    rc, out = stack.cni(H2, "DEL", conf(), cid="ctr-b", netns=None, args=pod_args)
    assert (rc, out) == (0, None)
    b_if, _ = device_names("blue", "default/web")
    assert b_if not in stack.ports(H2) and not _link_exists(b_if, H2)
    assert stack.endpoint("blue", "default/web") is None
    time.sleep(0.5)
    assert stack.flows_mentioning(a_ip) == [] and stack.flows_mentioning(b_ip) == []


def _cni_labels(**labels: str) -> dict[str, Any]:
    """``args`` carrying ``args.cni.labels`` as the CNI conventions write them."""
    return {"cni": {"labels": [{"key": k, "value": v} for k, v in labels.items()]}}


def test_args_cni_labels_select_the_pod_from_its_first_packet(stack: Stack) -> None:
    """``args.cni.labels`` are on the endpoint in the ADD's own bind (no change after it),
    so an ingress policy on app=db holds for the first packet sent to the pod once ADD
    returned: from an unlabelled pod dropped, from app=web delivered. Bad labels fail the
    ADD with code 7 and make nothing."""
    names = [f"{PREFIX}lw", f"{PREFIX}lo", f"{PREFIX}ld"]
    web_ns, other_ns, db_ns = (stack.netns(n) for n in names)
    policy = {
        "name": "db-in",
        "selector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"selector": {"matchLabels": {"app": "web"}}}]}],
    }
    r = stack.api.post("/api/v1/networks/blue/policies", json=policy)
    assert r.status_code == 201, r.text
    try:
        rc, _ = stack.cni(H2, "ADD", conf(args=_cni_labels(app="web")), cid="l-web", netns=web_ns)
        assert rc == 0
        rc, _ = stack.cni(H2, "ADD", conf(), cid="l-other", netns=other_ns)
        assert rc == 0
        before = stack.state()
        bad = conf(args=_cni_labels(app="a b"))
        rc, out = stack.cni(H1, "ADD", bad, cid="l-db", netns=db_ns)
        assert rc == 1 and out["code"] == 7 and "not a valid label value" in out["msg"], out
        assert stack.state() == before

        rc, db = stack.cni(H1, "ADD", conf(args=_cni_labels(app="db")), cid="l-db", netns=db_ns)
        assert rc == 0, db
        db_ip = db["ips"][0]["address"].split("/")[0]
        assert not stack.ping(names[1], db_ip)  # the first packet from elsewhere: dropped
        assert stack.ping(names[0], db_ip)  # from app=web: delivered
        ep = stack.endpoint("blue", "l-db")
        assert ep and ep["labels"] == {"app": "db"} and ep["state"] == "ready"
        steps = stack.api.get("/api/v1/networks/blue/endpoints/l-db/history").json()
        assert steps[0]["kind"] == "bound" and ep["revision"] == steps[0]["revision"], steps
    finally:
        stack.api.delete("/api/v1/networks/blue/policies/db-in")
        for host, cid, ns in (
            (H2, "l-web", web_ns),
            (H2, "l-other", other_ns),
            (H1, "l-db", db_ns),
        ):
            stack.cni(host, "DEL", conf(), cid=cid, netns=ns)


def test_requested_addresses_ifname_and_kept_address(stack: Stack) -> None:
    c_ns, d_ns, e_ns = stack.netns("vxr-c"), stack.netns("vxr-d"), stack.netns("vxr-e")
    rc, c = stack.cni(
        H1, "ADD", conf(runtimeConfig={"ips": ["10.40.0.77/24"]}), cid="ctr-c", netns=c_ns,
        ifname="net1",
    )  # fmt: skip
    assert rc == 0, c
    assert c["ips"][0]["address"] == "10.40.0.77/24" and c["interfaces"][0]["name"] == "net1"
    assert stack.endpoint("blue", "ctr-c:net1") is not None and _link_exists("net1", "vxr-c")
    rc, d = stack.cni(H2, "ADD", conf(), cid="ctr-d", netns=d_ns, args="IP=10.40.0.78")
    assert rc == 0 and d["ips"][0]["address"] == "10.40.0.78/24", d
    # the same address for another container: refused, nothing made
    before = stack.state()
    rc, err = stack.cni(
        H1, "ADD", conf(runtimeConfig={"ips": ["10.40.0.77"]}), cid="ctr-e", netns=e_ns
    )
    assert rc != 0 and err["code"] == 100, err
    assert stack.state() == before and not _link_exists("eth0", "vxr-e")

    # keepAddress: the name keeps its address and MAC on another host
    keep = conf(keepAddress=True, runtimeConfig={"endpointName": "db-0"})
    rc, db1 = stack.cni(H1, "ADD", keep, cid="ctr-db1", netns=e_ns)
    assert rc == 0, db1
    assert stack.cni(H1, "DEL", keep, cid="ctr-db1", netns=e_ns)[0] == 0
    assert stack.endpoint("blue", "db-0")["state"] == "reserved"  # type: ignore[index]
    subprocess.run(["ip", "netns", "del", "vxr-e"], check=True)
    stack.namespaces.remove("vxr-e")
    f_ns = stack.netns("vxr-f")
    rc, db2 = stack.cni(H2, "ADD", keep, cid="ctr-db2", netns=f_ns)
    assert rc == 0, db2
    assert (db2["ips"], db2["interfaces"][0]["mac"]) == (db1["ips"], db1["interfaces"][0]["mac"])
    assert stack.ping("vxr-c", db2["ips"][0]["address"].split("/")[0])
    # a stale DEL of the first sandbox does not unplug the second
    assert stack.cni(H2, "DEL", keep, cid="ctr-db1", netns=None)[0] == 0
    assert stack.ping("vxr-d", db2["ips"][0]["address"].split("/")[0])
    for host, cid, ns, ifname, cfg in (
        (H1, "ctr-c", c_ns, "net1", conf()), (H2, "ctr-d", d_ns, "eth0", conf()),
        (H2, "ctr-db2", f_ns, "eth0", conf(runtimeConfig={"endpointName": "db-0"})),
    ):  # fmt: skip
        assert stack.cni(host, "DEL", cfg, cid=cid, netns=ns, ifname=ifname)[0] == 0
    assert stack.endpoint("blue", "db-0") is None


def test_del_keeps_the_address_of_a_name_bound_on_another_host(stack: Stack) -> None:
    """Issue 8: an ADD does not take a name that is in use on another live host (before, the
    bind moved it silently); a DEL frees an address with a conditional delete
    (``?if_unbound=true``, in the controller's deleting transaction), so a name bound
    elsewhere by then keeps it."""
    g_ns, h_ns = stack.netns("vxr-g"), stack.netns("vxr-h")
    pod = conf(runtimeConfig={"endpointName": "mover"})
    rc, first = stack.cni(H1, "ADD", pod, cid="ctr-m1", netns=g_ns)
    assert rc == 0, first
    before = stack.state()
    rc, err = stack.cni(H2, "ADD", pod, cid="ctr-m2", netns=h_ns)
    # refused by the controller (h2's agent token may not take a live host's endpoint)
    assert rc != 0 and f"bound to host '{H1}'" in err["msg"], err
    assert stack.state() == before and not _link_exists("eth0", "vxr-h")
    # an operator moves it to h2 on purpose; h1's DEL of the old sandbox comes late: it
    # unplugs there, and the controller refuses to delete the endpoint bound to h2 (409),
    # which DEL takes as "kept"
    moved = stack.api.put(
        "/api/v1/networks/blue/endpoints/mover/binding",
        json={"host": H2, "ofport": 4000, "move": True},
    )
    assert moved.status_code == 200, moved.text
    assert stack.cni(H1, "DEL", pod, cid="ctr-m1", netns=g_ns) == (0, None)
    mover = stack.endpoint("blue", "mover")
    assert mover is not None and (mover["host"], mover["ofport"]) == (H2, 4000)
    stack.api.delete("/api/v1/networks/blue/endpoints/mover/binding").raise_for_status()
    stack.api.delete("/api/v1/networks/blue/endpoints/mover").raise_for_status()


def test_gc_removes_only_stale_attachments(stack: Stack) -> None:
    nss = {n: stack.netns(f"vxr-{n}") for n in ("g1", "g2", "g3")}
    ips = {}
    for n, host in (("g1", H1), ("g2", H1), ("g3", H2)):
        rc, res = stack.cni(host, "ADD", conf(), cid=f"ctr-{n}", netns=nss[n])
        assert rc == 0, res
        ips[n] = res["ips"][0]["address"].split("/")[0]
    valid = [{"containerID": "ctr-g1", "ifname": "eth0"}, {"containerID": "ctr-g3"}]
    gc = conf(**{"cni.dev/valid-attachments": valid})
    for host in (H1, H2):
        assert stack.cni(host, "GC", gc, ifname=None) == (0, None)
    assert stack.endpoint("blue", "ctr-g2") is None
    assert device_names("blue", "ctr-g2")[0] not in stack.ports(H1)
    assert stack.endpoint("blue", "ctr-g1")["state"] == "ready"  # type: ignore[index]
    assert stack.ping("vxr-g3", ips["g1"]) and not stack.ping("vxr-g3", ips["g2"])
    # GC with nothing valid clears this configuration's attachments
    empty = conf(**{"cni.dev/valid-attachments": []})
    for host in (H1, H2):
        assert stack.cni(host, "GC", empty, ifname=None) == (0, None)
    assert stack.endpoint("blue", "ctr-g1") is None and stack.endpoint("blue", "ctr-g3") is None


def test_status_and_version(stack: Stack) -> None:
    assert stack.cni(H1, "STATUS", conf(), ifname=None) == (0, None)
    rc, err = stack.cni(H1, "STATUS", conf(network="nosuch"), ifname=None)
    assert rc != 0 and err["code"] == 50, err
    rc, err = stack.cni(
        H1, "STATUS", conf(), ifname=None, env={"VXPLANE_AGENT_SOCKET": "/run/vxplane/none.sock"}
    )
    assert rc != 0 and err["code"] == 50, err
    rc, out = stack.cni(H1, "VERSION", {"cniVersion": "1.0.0"}, ifname=None)
    assert rc == 0 and out["cniVersion"] == "1.0.0" and "1.1.0" in out["supportedVersions"]


def test_older_result_format(stack: Stack) -> None:
    ns = stack.netns("vxr-old")
    rc, res = stack.cni(H1, "ADD", conf(version="0.4.0"), cid="ctr-old", netns=ns)
    assert rc == 0 and res["cniVersion"] == "0.4.0" and res["ips"][0]["version"] == "4", res
    assert "mtu" not in res["interfaces"][0]
    assert stack.cni(H1, "DEL", conf(version="0.4.0"), cid="ctr-old", netns=ns)[0] == 0


def test_dual_stack_results_and_addresses(stack: Stack) -> None:
    """A network with ``subnet6``: the ADD result carries both families (CNI 1.x and the
    ``version`` tags of 0.4.0), the namespace holds both addresses (the IPv6 one usable at
    once, no DAD), the link-local address derived from the MAC and both default routes;
    IPv6 works between the two hosts; CHECK sees a lost IPv6 address; DEL cleans up."""
    stack.api.post(
        "/api/v1/networks", json={"name": "teal", "subnet": "10.41.0.0/24", "subnet6": TEAL6}
    ).raise_for_status()
    teal = conf("teal")
    t1, t2 = stack.netns("vxr-t1"), stack.netns("vxr-t2")
    rc, a = stack.cni(H1, "ADD", teal, cid="ctr-t1", netns=t1)
    assert rc == 0, a
    rc, b = stack.cni(H2, "ADD", conf("teal", version="0.4.0"), cid="ctr-t2", netns=t2)
    assert rc == 0, b
    a4, a6 = (ip["address"] for ip in a["ips"])
    assert a6 == f"{derive_ip6(TEAL6, a4.split('/')[0])}/64"
    assert a["ips"][1] == {"address": a6, "gateway": "fd00:41::a29:1", "interface": 0}
    assert a["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "10.41.0.1"}, {"dst": "::/0", "gw": "fd00:41::a29:1"},
    ]  # fmt: skip
    assert [ip["version"] for ip in b["ips"]] == ["4", "6"]
    ep = stack.endpoint("teal", "ctr-t1")
    assert ep is not None and f"{ep['ip6']}/{ep['prefixlen6']}" == a6
    # in the namespace: the address (no DAD), the MAC's link-local one, the default route
    shown = _ip("-n", "vxr-t1", "-6", "-o", "addr", "show", "dev", "eth0")
    assert f"inet6 {a6} scope global nodad" in shown, shown
    assert f"inet6 {link_local(a['interfaces'][0]['mac'])}/64 scope link" in shown, shown
    assert "tentative" not in shown
    route = _ip("-n", "vxr-t1", "-6", "route", "show", "default")
    assert route.startswith("default via fd00:41::a29:1 dev eth0"), route
    # IPv6 between the two hosts (inside the IPv4 VXLAN underlay)
    b6 = b["ips"][1]["address"].split("/")[0]
    assert stack.ping("vxr-t1", b6) and stack.ping("vxr-t2", a6.split("/")[0])

    assert stack.cni(H1, "CHECK", conf("teal", prevResult=a), cid="ctr-t1", netns=t1) == (0, None)
    _ip("-n", "vxr-t1", "-6", "addr", "del", a6, "dev", "eth0")
    rc, out = stack.cni(H1, "CHECK", conf("teal", prevResult=a), cid="ctr-t1", netns=t1)
    assert rc != 0 and out["code"] == 101 and a6 in out["msg"], out
    for host, cid, ns, cfg in ((H1, "ctr-t1", t1, teal),
                               (H2, "ctr-t2", t2, conf("teal", version="0.4.0"))):  # fmt: skip
        assert stack.cni(host, "DEL", cfg, cid=cid, netns=ns) == (0, None)
    assert stack.endpoint("teal", "ctr-t1") is None and stack.endpoint("teal", "ctr-t2") is None
    assert not _link_exists("eth0", "vxr-t1") and not _link_exists("eth0", "vxr-t2")
    stack.api.delete("/api/v1/networks/teal").raise_for_status()


def _ip(*argv: str) -> str:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


# (command, environment, configuration or raw stdin, expected code)
ERROR_CASES: list[tuple[str, str | None, dict[str, Any], Any, int]] = [
    ("no command", None, {}, conf(), 4),
    ("unknown command", "FROB", {}, conf(), 4),
    ("no container id", "ADD", {"cid": None}, conf(), 4),
    ("bad container id", "ADD", {"cid": "-bad/id"}, conf(), 4),
    ("no ifname", "ADD", {"ifname": None}, conf(), 4),
    ("ifname too long", "ADD", {"ifname": "a-very-long-ifname"}, conf(), 4),
    ("no netns", "ADD", {"netns": None}, conf(), 4),
    ("malformed CNI_ARGS", "ADD", {"args": "garbage"}, conf(), 4),
    ("unknown CNI_ARGS key", "ADD", {"args": "FOO=1"}, conf(), 4),
    ("netns gone", "ADD", {"netns": "/run/netns/vxr-none"}, conf(), 3),
    ("netns gone on CHECK", "CHECK", {"netns": "/run/netns/vxr-none"}, conf(prevResult={}), 3),
    ("not JSON", "ADD", {}, b"{not json", 6),
    ("not an object", "ADD", {}, b"[1, 2]", 6),
    ("unsupported version", "ADD", {}, conf(version="9.9.9"), 1),
    ("CHECK before 0.4.0", "CHECK", {}, conf(version="0.3.1", prevResult={}), 1),
    ("GC before 1.1.0", "GC", {}, conf(version="1.0.0"), 1),
    ("STATUS before 1.1.0", "STATUS", {}, conf(version="1.0.0"), 1),
    ("ipMasq", "ADD", {}, conf(ipMasq=True), 2),
    ("foreign IPAM", "ADD", {}, conf(ipam={"type": "host-local"}), 2),
    ("no version", "ADD", {}, {"name": "blue", "type": "vxplane-cni"}, 7),
    ("no name", "ADD", {}, {"cniVersion": "1.1.0", "type": "vxplane-cni"}, 7),
    ("unknown network", "ADD", {}, conf(network="nosuch"), 7),
    ("two addresses", "ADD", {}, conf(runtimeConfig={"ips": ["10.40.0.5", "10.40.0.6"]}), 7),
    ("IPv6 address", "ADD", {}, conf(runtimeConfig={"ips": ["fd00::5/64"]}), 7),
    ("address outside subnet", "ADD", {}, conf(runtimeConfig={"ips": ["10.99.0.5/24"]}), 7),
    ("gateway address", "ADD", {"args": "IP=10.40.0.1"}, conf(), 7),
    ("CHECK without prevResult", "CHECK", {}, conf(), 7),
    ("GC without valid list", "GC", {}, conf(), 7),
    ("agent down", "ADD", {"env": {"VXPLANE_AGENT_SOCKET": "/run/vxplane/none.sock"}}, conf(), 11),
]


def test_error_paths_give_the_spec_error_and_change_nothing(stack: Stack) -> None:
    ns = stack.netns("vxr-err")
    before = stack.state()
    for label, command, over, cfg, code in ERROR_CASES:
        kw: dict[str, Any] = {"cid": "ctr-err", "netns": ns, "ifname": "eth0", **over}
        rc, err = stack.cni(H1, command, cfg, **kw)
        assert rc != 0, f"{label}: exit 0"
        assert isinstance(err, dict) and err.get("code") == code, f"{label}: {err}"
        assert isinstance(err.get("msg"), str) and err["msg"], f"{label}: {err}"
        assert err.get("cniVersion") in ("1.1.0", "1.0.0", "0.3.1", "0.4.0"), f"{label}: {err}"
    assert stack.state() == before
    assert not _link_exists("eth0", "vxr-err")


def _applied(api: httpx.Client, timeout: float = 20.0) -> None:
    """Wait until every switch applied the controller's current revision."""
    rev = api.get("/healthz").json()["revision"]
    deadline = time.monotonic() + timeout
    while any(
        (h.get("switch") or {}).get("applied_revision", -1) < rev
        for h in api.get("/api/v1/hosts").json()
    ):
        assert time.monotonic() < deadline, f"switches did not apply revision {rev}"
        time.sleep(0.1)


def _serve(netns: str, ip: str, site: Path) -> subprocess.Popen[bytes]:
    """A web server on ``ip``:80 in container namespace ``netns``, once it listens (``::``:
    both families)."""
    web = subprocess.Popen(
        ["ip", "netns", "exec", netns, "python3", "-m", "http.server", "--bind", ip,
         "--directory", str(site), "80"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    probe = ["ip", "netns", "exec", netns, "ss", "-Hltn", "sport = :80"]
    deadline = time.monotonic() + 10
    while not subprocess.run(probe, capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "the container's web server never listened"
        time.sleep(0.1)
    return web


def _from_outside(lab: Lab, address: str, port: int) -> subprocess.CompletedProcess[str]:
    status = lab.status()
    argv = ["ip", "netns", "exec", status["outside"], "curl", "-sS", "--max-time", "3",
            f"http://{address}:{port}/page.txt"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


def test_port_mappings_publish_on_add_and_go_on_del(stack: Stack, tmp_path: Path) -> None:
    """The ``portMappings`` capability: ADD publishes on the egress addresses of the pod's
    host (the network is dual stack: reached from the lab's outside namespace over IPv4 and
    over IPv6), a host port taken by another pod fails that ADD with the controller's
    message and leaves the holder's publication alone (also through the DEL that follows),
    DEL unpublishes (both families)."""
    body = {"name": "shopc", "subnet": "10.42.0.0/24", "subnet6": "fd00:42::/64",
            "external": True}  # fmt: skip
    stack.api.post("/api/v1/networks", json=body).raise_for_status()
    ((egress, egress6),) = [(h["egress_ip"], h["egress_ip6"]) for h in stack.lab.status()["hosts"]
                            if h["name"] == H1]  # fmt: skip
    assert egress6, "the lab's agent runs without --egress-ip6"
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.txt").write_text("mapped page\n")
    mapping = {"hostPort": 8090, "containerPort": 80, "protocol": "tcp"}
    pm = conf("shopc", capabilities={"portMappings": True},
              runtimeConfig={"portMappings": [mapping]})  # fmt: skip
    a_ns = stack.netns(f"{PREFIX}pma")
    code, res = stack.cni(H1, "ADD", pm, cid="pma", netns=a_ns)
    assert code == 0, res
    (pub,) = stack.api.get("/api/v1/networks/shopc/publications").json()
    assert (pub["endpoint"], pub["host_port"], pub["port"], pub["proto"]) == ("pma", 8090, 80,
                                                                              "tcp")  # fmt: skip
    assert (pub["host"], pub["address"], pub["address6"]) == (H1, egress, egress6)
    assert len(res["ips"]) == 2, res  # both families
    web = _serve(a_ns.rsplit("/", 1)[1], "::", site)
    try:
        _applied(stack.api)
        for address in (egress, f"[{egress6}]"):
            got = _from_outside(stack.lab, address, 8090)
            assert got.returncode == 0 and got.stdout == "mapped page\n", (address, got.stderr)
            assert _from_outside(stack.lab, address, 8091).returncode != 0  # nothing else open

        # another pod asks for the same host port: its ADD fails, nothing of it stays
        before = stack.state()
        b_ns = stack.netns(f"{PREFIX}pmb")
        code, err = stack.cni(H2, "ADD", pm, cid="pmb", netns=b_ns)
        assert code != 0 and err["code"] == 100, err
        assert "8090/tcp is already published for shopc/pma" in err["msg"], err
        assert stack.ports(H2) == before[1]  # the attachment was rolled back
        code, out = stack.cni(H2, "DEL", pm, cid="pmb", netns=b_ns)  # as the runtime does next
        assert code == 0, out
        assert stack.state() == before
        assert [p["endpoint"] for p in stack.api.get("/api/v1/networks/shopc/publications")
                .json()] == ["pma"]  # fmt: skip
        _applied(stack.api)
        got = _from_outside(stack.lab, egress, 8090)
        assert got.returncode == 0 and got.stdout == "mapped page\n", got.stderr
    finally:
        web.terminate()
        web.wait(timeout=10)

    code, _ = stack.cni(H1, "DEL", pm, cid="pma", netns=a_ns)
    assert code == 0
    assert stack.api.get("/api/v1/networks/shopc/publications").json() == []
    _applied(stack.api)
    assert _from_outside(stack.lab, egress, 8090).returncode != 0
    assert _from_outside(stack.lab, f"[{egress6}]", 8090).returncode != 0
    bad = conf("shopc", runtimeConfig={"portMappings": [{**mapping, "hostPort": 40000}]})
    code, err = stack.cni(H1, "ADD", bad, cid="pmc", netns=stack.netns(f"{PREFIX}pmc"))
    assert code != 0 and err["code"] == 7 and "32768 and up" in err["msg"], err
