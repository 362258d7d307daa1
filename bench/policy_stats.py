"""What the policy gauges of ``GET /metrics`` cost a scrape: ``policystats.policy_stats``
(counted) against ``policy_stats_by_flows`` (compiling every host's policy flows).

No root, no OVS: ``.venv/bin/python -m bench.policy_stats [--sizes 100 1000 5000]
[--hosts 50] [--repeat 5]``. One network with two policies ("app=db accepts tcp/5432 from
app=web", "app=web sends only to app=db"); endpoints labelled web, db, other in turn, spread
over the hosts. Prints the median of ``--repeat`` runs of each, their ratio, and the flow
count (equal for both: the scrape reports it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network

from controller.model import (
    Endpoint,
    EndpointState,
    Network,
    Policy,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    mac_for_ip,
)
from controller.policystats import PolicyStats, policy_stats, policy_stats_by_flows

WEB = (("app", "web"),)
DB = (("app", "db"),)


def network(n: int, hosts: int) -> tuple[Network, list[Endpoint]]:
    """The bench's network and its ``n`` bound endpoints on ``hosts`` hosts."""
    db_rule = PolicyRule(peers=(PolicyPeer(selector=WEB),), ports=(PolicyPort("tcp", 5432),))
    net = Network(
        "shop", 7, IPv4Network("10.0.0.0/16"), IPv4Address("10.0.0.1"),
        policies=(
            Policy("db-from-web", selector=DB, ingress=(db_rule,)),
            Policy("web-out", selector=WEB, ingress=None,
                   egress=(PolicyRule(peers=(PolicyPeer(selector=DB),)),)),
        ),
    )  # fmt: skip
    eps = []
    for i in range(n):
        ip = IPv4Address(int(IPv4Address("10.0.1.0")) + i)
        eps.append(
            Endpoint(
                network="shop",
                name=f"e{i}",
                ip=ip,
                mac=mac_for_ip(ip),
                host=f"h{i % hosts}",
                ofport=10 + i // hosts,
                state=EndpointState.READY,
                bound_rev=1,
                labels=(("app", ("web", "db", "other")[i % 3]),),
            )  # fmt: skip
        )
    return net, eps


def median_ms(
    fn: Callable[[Network, list[Endpoint]], PolicyStats], args: tuple[Network, list[Endpoint]],
    repeat: int,
) -> tuple[float, PolicyStats]:  # fmt: skip
    runs, got = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        got = fn(*args)
        runs.append(time.perf_counter() - start)
    assert got is not None
    return statistics.median(runs) * 1000, got


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    print(
        f"{'endpoints':>9} {'hosts':>5} {'flows':>7} {'counted ms':>10} {'compiled ms':>11} ratio"
    )
    for n in opts.sizes:
        args = network(n, opts.hosts)
        fast, a = median_ms(policy_stats, args, opts.repeat)
        slow, b = median_ms(policy_stats_by_flows, args, opts.repeat)
        assert a == b, (a, b)
        print(f"{n:>9} {opts.hosts:>5} {a.flows:>7} {fast:>10.1f} {slow:>11.1f} {slow / fast:.0f}x")


if __name__ == "__main__":
    main()
