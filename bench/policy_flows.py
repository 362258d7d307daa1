"""Policy flows for N sources x M destinations: how many flows one policy costs.

No root, no OVS: ``.venv/bin/python -m bench.policy_flows [--sizes 1 10 100 1000]``. One
network on two hosts: N endpoints labelled app=web on h1, M labelled app=db on h2, and the
policy "app=db accepts tcp/5432 from app=web". Counts the desired flows of h2 (the
destinations' host) in the policy tables (POL_OUT_CT, POL_IN_CT) and their conjunction
flows, for every N and M; the product N x M is printed beside them for comparison. The
count is of ``pipeline.desired_flows``, the set the engine installs (what a switch holds
once converged), not measured on a real switch.
"""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address, IPv4Network

from controller.flows import Conjunction
from controller.model import (
    Endpoint,
    EndpointState,
    Host,
    Network,
    Policy,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Snapshot,
    mac_for_ip,
)
from controller.pipeline import T_POL_IN_CT, T_POL_OUT_CT, desired_flows

WEB = (("app", "web"),)
DB = (("app", "db"),)


def snapshot(n: int, m: int) -> Snapshot:
    """The bench's intent for N web and M db endpoints."""
    rule = PolicyRule(peers=(PolicyPeer(selector=WEB),), ports=(PolicyPort("tcp", 5432),))
    net = Network(
        "shop", 10, IPv4Network("10.0.0.0/16"), IPv4Address("10.0.0.1"),
        policies=(Policy("db-from-web", selector=DB, ingress=(rule,)),),
    )  # fmt: skip
    hosts = {h: Host(h, IPv4Address(f"198.18.0.{i}"), dpid=i) for i, h in ((1, "h1"), (2, "h2"))}
    eps = []
    for i in range(n + m):
        ip = IPv4Address(int(IPv4Address("10.0.1.0")) + i)
        host, labels = ("h1", WEB) if i < n else ("h2", DB)
        eps.append(Endpoint("shop", f"e{i}", ip, mac_for_ip(ip), host, 10 + i,
                            EndpointState.READY, labels=labels))  # fmt: skip
    return Snapshot(1, {"shop": net}, hosts, (), tuple(eps))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    args = p.parse_args(argv)
    print(f"{'N':>5} {'M':>5}  {'policy flows':>12}  {'conjunction':>11}  {'N+M':>5}  {'N x M':>7}")
    for n in args.sizes:
        for m in args.sizes:
            flows = [f for f in desired_flows(snapshot(n, m), "h2")
                     if f.table in (T_POL_IN_CT, T_POL_OUT_CT)]  # fmt: skip
            conj = sum(
                1 for f in flows
                if "conj_id" in f.match_dict() or any(isinstance(a, Conjunction) for a in f.actions)
            )  # fmt: skip
            print(f"{n:>5} {m:>5}  {len(flows):>12}  {conj:>11}  {n + m:>5}  {n * m:>7}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
