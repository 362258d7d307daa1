"""hostagent.plug: the one plug/unplug sequence, through the in-memory OVS, devices and
controller of ``agentfakes.py``. Each test says what the host and the controller hold after."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from ipaddress import IPv4Address, IPv4Interface
from typing import Any

import pytest

from hostagent.client import ControllerError
from hostagent.errors import (
    AgentError,
    ControllerUnavailable,
    InvalidRequest,
    LinkError,
    NotReady,
    OvsError,
)
from hostagent.model import Endpoint
from hostagent.ovs import MAX_OFPORT
from hostagent.plug import EXT_IP, PlugRequest, device_names, port_ids
from tests.unit.agentfakes import HOST, MTU, FakeController, FakeHost, FakeInterface, FakeLinks

NS = "c1"
HOST_IF, PEER_IF = device_names("blue", "a")


@pytest.fixture
def host() -> FakeHost:
    h = FakeHost()
    h.links.add_netns(NS)
    return h


def req(name: str = "a", netns: str | None = NS, **kw: object) -> PlugRequest:
    return PlugRequest(network="blue", name=name, netns=netns, **kw)  # type: ignore[arg-type]


def test_plug_makes_veth_port_binding_and_configures_the_container(host: FakeHost) -> None:
    plugger = host.plugger()
    ep = plugger.plug(req(labels={"app": "web"}))

    assert ep.ready and (ep.host, ep.ofport, ep.port_name) == (HOST, 2, HOST_IF)
    assert (str(ep.ip), ep.mac) == ("10.0.0.2", "0a:58:0a:00:00:02")
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, 2, "ready")}
    assert ep.labels == {"app": "web"} == host.ctl.endpoints[("blue", "a")].labels
    # the veth: host side up on br-int, peer inside the container, now eth0
    vx, eth0 = host.links.dev(HOST_IF), host.links.dev("eth0", NS)
    assert vx is not None and eth0 is not None and vx.peer is eth0
    assert host.links.names_in() == {HOST_IF} and host.links.names_in(NS) == {"eth0"}
    assert vx.up and vx.mtu == MTU
    assert not eth0.tx_offload and eth0.up
    assert (eth0.mac, eth0.mtu, eth0.addresses, eth0.gateway) == (
        "0a:58:0a:00:00:02", MTU, [IPv4Interface("10.0.0.2/24")], IPv4Address("10.0.0.1"),
    )  # fmt: skip
    plugger.settle("blue", "a")  # the address label is written after the answer
    port = host.ovs.port(HOST_IF)
    assert port is not None and port.ofport == 2
    assert port.external_ids == {**port_ids("blue", "a"), EXT_IP: "10.0.0.2"}


def test_labels_replace_none_keeps_empty_clears(host: FakeHost) -> None:
    """A runtime that knows the labels (Docker, CNI ``args.cni.labels``) replaces them in the
    binding request, ``{}`` included (a reused name must not keep an earlier container's
    labels); None (labels not known) leaves the endpoint's as they are."""
    plugger = host.plugger()
    plugger.plug(req(labels={"app": "web"}))
    plugger.unplug("blue", "a")
    plugger.plug(req())  # labels not given: kept
    assert host.ctl.endpoints[("blue", "a")].labels == {"app": "web"}
    plugger.unplug("blue", "a")
    ep = plugger.plug(req(labels={}))
    assert ep.labels == {} == host.ctl.endpoints[("blue", "a")].labels


def test_plug_with_a_requested_address(host: FakeHost) -> None:
    ep = host.plugger().plug(req(ip="10.0.0.77"))
    assert str(ep.ip) == "10.0.0.77"
    port = host.ovs.port(HOST_IF)
    assert port is not None and port.external_ids[EXT_IP] == "10.0.0.77"
    assert host.ovs.added[HOST_IF][EXT_IP] == "10.0.0.77"  # known up front: in the port's own txn


def test_second_plug_into_the_same_netns_rebinds_without_a_new_port(host: FakeHost) -> None:
    plugger = host.plugger()
    first = plugger.plug(req())
    eth0 = host.links.dev("eth0", NS)
    host.ctl.unbind("blue", "a")  # e.g. lost at the controller in between

    again = plugger.plug(req(runtime_ids={"who": "retry"}))

    assert again.ready and (again.ip, again.ofport) == (first.ip, first.ofport)
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, 2, "ready")}
    assert list(host.ovs.endpoint_ports()) == [HOST_IF]
    assert host.links.dev("eth0", NS) is eth0  # the same device, untouched
    assert host.ovs.endpoint_ports()[HOST_IF].external_ids["who"] == "retry"
    assert plugger.next_ofport() == 3  # no number spent on the second plug


def test_second_plug_after_the_controller_lost_the_endpoint_keeps_its_address(
    host: FakeHost,
) -> None:
    plugger = host.plugger()
    plugger.plug(req())
    host.ctl.delete_endpoint("blue", "a")
    assert str(plugger.plug(req()).ip) == "10.0.0.2"
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, 2, "ready")}


def test_second_plug_never_binds_another_address_than_the_containers(host: FakeHost) -> None:
    plugger = host.plugger()
    plugger.plug(req())
    host.ctl.delete_endpoint("blue", "a")
    host.ctl.create_endpoint("blue", "x")  # the freed address went to another name

    with pytest.raises(ControllerError):
        plugger.plug(req())

    assert host.ctl.view() == {("blue", "x"): ("10.0.0.2", None, None, "reserved")}
    assert host.links.dev("eth0", NS).addresses == [IPv4Interface("10.0.0.2/24")]


def test_ofport_numbers_are_never_reused_while_running(host: FakeHost) -> None:
    plugger = host.plugger()
    a = plugger.plug(req("a"))
    assert plugger.unplug("blue", "a")
    host.links.add_netns("c2")
    b = plugger.plug(req("b", netns="c2"))
    c = plugger.plug(req("c", netns=NS))
    assert (a.ofport, b.ofport, c.ofport) == (2, 3, 4)
    assert host.ovs.max_ofport("br-int") == 4  # OVS itself would hand out 2 again
    assert host.ctl.view()[("blue", "b")][2:] == (3, "ready")


def test_a_restarted_plugger_starts_above_every_port_in_ovs(host: FakeHost) -> None:
    """Above every real port of br-int: its LOCAL port (65534) does not count, or the
    numbers would wrap around at once onto ports in use (seen after an agent restart)."""
    host.ovs.ifaces["br-int"] = FakeInterface("br-int", "br-int", 65534, None, {})  # LOCAL
    host.plugger().plug(req("a"))
    assert host.plugger().next_ofport() == 3  # not 2: that is a's
    host.links.add_netns("c2")
    assert host.plugger().plug(req("b", netns="c2")).ofport == 3


def test_ofport_numbers_wrap_around_onto_free_ones_only(host: FakeHost) -> None:
    plugger = host.plugger()
    plugger.plug(req("a"))  # ofport 2
    host.links.add_netns("c2")
    plugger.plug(req("b", netns="c2"))  # 3
    assert plugger.unplug("blue", "a")
    plugger._ofport = MAX_OFPORT - 1
    assert plugger.next_ofport() == MAX_OFPORT
    assert plugger.next_ofport() == 2  # 2 is free again; 3 is still b's
    assert plugger.next_ofport() == 4


def test_ofport_ovs_did_not_honour_is_bound_instead(host: FakeHost) -> None:
    host.ovs.unavailable.add(2)  # the number the plugger asks for first
    ep = host.plugger().plug(req())
    assert ep.ofport == 3 and ep.ready
    assert host.ovs.endpoint_ports()[HOST_IF].ofport == 3
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, 3, "ready")}


def test_docker_style_plug_leaves_the_peer_in_the_agents_namespace(host: FakeHost) -> None:
    ep = host.plugger().plug(req(netns=None, ip="10.0.0.9"))
    assert ep.ready and str(ep.ip) == "10.0.0.9"
    assert host.links.names_in() == {HOST_IF, PEER_IF} and host.links.names_in(NS) == set()
    peer = host.links.dev(PEER_IF)
    assert peer is not None and not peer.tx_offload and peer.mtu == MTU
    assert peer.addresses == [] and peer.mac != ep.mac  # Docker configures it, not us
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.9", HOST, 2, "ready")}


# -- failures: everything this call made is undone ------------------------------------------


def _rebind_refused(h: FakeHost) -> None:
    h.ovs.unavailable.add(2)  # OVS gives another number: the plug binds again, refused
    h.ctl.fail("bind", ControllerError(409, "refused"), after=1)


def _rebind_not_ready(h: FakeHost) -> None:
    h.ovs.unavailable.add(2)  # OVS gives another number: the second bind stays pending
    h.ctl.confirms = 1


def _never_ready(h: FakeHost) -> None:
    h.ctl.confirms = 0


Inject = Callable[[FakeHost], object]
STEPS: dict[str, tuple[Inject, type[BaseException]]] = {
    "veth": (lambda h: h.links.fail("make_veth_into", LinkError("veth")), LinkError),
    "tx offload": (lambda h: h.links.fail("disable_tx_offload", LinkError("tx")), LinkError),
    "port": (lambda h: h.ovs.fail("add_port", OvsError("port")), OvsError),
    "ofport wait": (lambda h: h.ovs.fail("wait_ofport", OvsError("no ofport")), OvsError),
    "bind 409": (lambda h: h.ctl.fail("bind", ControllerError(409, "taken")), ControllerError),
    "bind unavailable": (
        lambda h: h.ctl.fail("bind", ControllerUnavailable("down")),
        ControllerUnavailable,
    ),  # fmt: skip
    "not ready": (_never_ready, NotReady),
    "rebind at the real ofport": (_rebind_refused, ControllerError),
    "not ready at the real ofport": (_rebind_not_ready, NotReady),
    "configure": (lambda h: h.links.fail("configure", LinkError("configure")), LinkError),
}


def test_a_failed_address_label_leaves_the_endpoint_plugged_and_is_logged(
    host: FakeHost, caplog: pytest.LogCaptureFixture
) -> None:
    """The answer does not wait for the address label (an OVSDB round trip on the path of
    every attach): it is written after, and its failure does not unplug a working endpoint."""
    host.ovs.fail("set_port_ids", OvsError("ids"))
    plugger = host.plugger()
    ep = plugger.plug(req())
    plugger.settle("blue", "a")
    assert ep.ready and host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, 2, "ready")}
    port = host.ovs.port(HOST_IF)
    assert port is not None and EXT_IP not in port.external_ids
    assert f"port {HOST_IF} not labelled" in caplog.text


def test_the_next_call_on_an_endpoint_waits_for_its_address_label(host: FakeHost) -> None:
    """An unplug right after the plug's answer never removes the port under the label
    still being written (and then finds it gone); order, not time, is asserted."""
    order: list[str] = []
    release = threading.Event()
    label, delete = host.ovs.set_port_ids, host.ovs.delete_port

    def slow_label(name: str, ids: Mapping[str, str]) -> None:
        release.wait(10)
        label(name, ids)
        order.append("label")

    def delete_port(bridge: str, name: str) -> None:
        order.append("delete")
        delete(bridge, name)

    host.ovs.set_port_ids = slow_label  # type: ignore[method-assign]
    host.ovs.delete_port = delete_port  # type: ignore[method-assign]
    plugger = host.plugger()
    plugger.plug(req())
    timer = threading.Timer(0.2, release.set)  # an unplug that did not wait would go first
    timer.start()
    try:
        assert plugger.unplug("blue", "a")
    finally:
        release.set()
        timer.cancel()
    assert order == ["label", "delete"] and host.is_empty()


@pytest.mark.parametrize("streams", [True, False], ids=["streamed", "whole"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "reserved"])
@pytest.mark.parametrize("step", list(STEPS))
def test_failure_at_any_step_undoes_everything(
    host: FakeHost, step: str, existing: bool, streams: bool
) -> None:
    host.ctl.streams = streams
    if existing:
        host.ctl.create_endpoint("blue", "a", ip="10.0.0.5")
    before = host.ctl.view()
    inject, error = STEPS[step]
    inject(host)

    with pytest.raises(error):
        host.plugger().plug(req())

    assert host.is_empty() and host.links.namespaces == {NS}
    assert host.ctl.view() == before  # created by this call: deleted; else unbound again


def test_a_namespace_that_has_the_interface_already_is_refused(host: FakeHost) -> None:
    host.links.add_device("eth0", NS)
    with pytest.raises(InvalidRequest):
        host.plugger().plug(req())
    assert host.links.names_in(NS) == {"eth0"} and host.links.dev("eth0", NS).kind is None
    assert host.links.names_in() == set() and host.ovs.endpoint_ports() == {}
    assert host.ctl.view() == {}


@pytest.mark.parametrize("netns", ["/proc/1/ns/net", "/run/netns/host-alias"])
def test_the_hosts_own_namespace_is_refused_before_anything_is_made(
    host: FakeHost, netns: str
) -> None:
    host.links.add_netns(netns)  # it exists: the agent's own namespace under some path
    host.links.host_netns.add(netns)
    plugger, asked = host.plugger(), len(host.ctl.calls)
    with pytest.raises(InvalidRequest, match="host's own"):
        plugger.plug(req(netns=netns))
    assert host.is_empty() and host.ctl.view() == {}
    assert len(host.ctl.calls) == asked  # the controller was not even asked
    assert [c[0] for c in host.links.calls] == ["check_netns"]


def test_failure_of_a_docker_style_plug_undoes_it(host: FakeHost) -> None:
    host.links.fail("disable_tx_offload", LinkError("tx"))
    with pytest.raises(LinkError):
        host.plugger().plug(req(netns=None))
    assert host.is_empty() and host.ctl.view() == {}


# -- unplug ---------------------------------------------------------------------------------


def test_unplug_removes_port_and_veth_and_unbinds_idempotently(host: FakeHost) -> None:
    plugger = host.plugger()
    plugger.plug(req())
    assert plugger.unplug("blue", "a") is True
    assert host.is_empty()
    assert host.ctl.view() == {("blue", "a"): ("10.0.0.2", None, None, "reserved")}  # kept
    assert plugger.unplug("blue", "a") is True
    assert plugger.unplug("blue", "never") is True  # unknown at the controller: 404 is fine
    assert host.is_empty()


def test_unplug_when_the_controller_is_unreachable(host: FakeHost) -> None:
    plugger = host.plugger()
    plugger.plug(req())
    host.ctl.down = True
    assert plugger.unplug("blue", "a") is False
    assert host.is_empty()
    host.ctl.down = False
    assert host.ctl.view()[("blue", "a")][1] == HOST  # told later, by reconciliation


def test_unplug_of_an_endpoint_that_moved_leaves_it_bound_there(host: FakeHost) -> None:
    plugger = host.plugger()
    plugger.plug(req())
    host.ctl.register_host("h2", "198.18.0.2")
    host.ctl.bind("blue", "a", "h2", 7, move=True)
    assert plugger.unplug("blue", "a") is True
    assert host.is_empty() and host.ctl.view()[("blue", "a")][1:3] == ("h2", 7)


def test_other_controller_errors_on_unplug_are_raised(host: FakeHost) -> None:
    plugger = host.plugger()
    plugger.plug(req())
    host.ctl.fail("unbind", ControllerError(403, "no"))
    with pytest.raises(AgentError):
        plugger.unplug("blue", "a")
    assert host.is_empty()


class _AnswersAfterConfigure(FakeController):
    """Streams the endpoint as bound, then holds the final answer until the container was
    configured (or 5 s): what a controller waiting for the switches looks like."""

    def __init__(self, configured: threading.Event) -> None:
        super().__init__()
        self.configured = configured
        self.configured_before_answer: bool | None = None

    def bind(self, *args: Any, **kwargs: Any) -> tuple[Endpoint, bool]:
        on_bound = kwargs.get("on_bound")
        if on_bound is not None:

            def streamed(ep: Endpoint) -> None:
                on_bound(ep)
                self.configured_before_answer = self.configured.wait(5)

            kwargs["on_bound"] = streamed
        return super().bind(*args, **kwargs)


class _SignalsConfigure(FakeLinks):
    def __init__(self, configured: threading.Event) -> None:
        super().__init__()
        self.configured = configured

    def configure(self, *args: Any, **kwargs: Any) -> None:
        super().configure(*args, **kwargs)
        self.configured.set()


def test_container_is_configured_while_the_controller_waits_for_the_flows() -> None:
    configured = threading.Event()
    ctl = _AnswersAfterConfigure(configured)
    host = FakeHost(ctl=ctl, links=_SignalsConfigure(configured))
    host.links.add_netns(NS)

    ep = host.plugger().plug(req())

    assert ctl.configured_before_answer is True  # configured from the streamed line
    assert ep.ready and host.links.dev("eth0", NS).addresses == [IPv4Interface("10.0.0.2/24")]
    bind_kwargs = host.ctl.calls_of("bind")[0][1]
    assert bind_kwargs["wait_ready"] == 1.0 and bind_kwargs["on_bound"] is not None


def test_a_controller_that_does_not_stream_is_configured_after_its_answer(
    host: FakeHost,
) -> None:
    host.ctl.streams = False
    order: list[str] = []
    real_configure = host.links.configure

    def configure(*args: Any, **kwargs: Any) -> None:
        order.append(f"configure after {len(host.ctl.calls_of('bind'))} bind(s)")
        real_configure(*args, **kwargs)

    host.links.configure = configure  # type: ignore[method-assign]
    ep = host.plugger().plug(req())
    assert ep.ready and order == ["configure after 1 bind(s)"]
    assert host.links.dev("eth0", NS).mac == "0a:58:0a:00:00:02"


def test_docker_style_plug_asks_for_no_stream(host: FakeHost) -> None:
    host.plugger().plug(req(netns=None))
    assert "on_bound" not in host.ctl.calls_of("bind")[0][1]  # nothing to configure early
