"""The agent's side of the CNI plugin: add, del, check, gc and status on top of ``Agent``.

CNI attachments are plain plugs (``hostagent.plug``) whose OVS interface also records who
made it (``external_ids``: container id, interface name, CNI configuration name and netns,
written in the same transaction as the port), so DEL finds its endpoint even if the
runtime's arguments changed, a stale DEL of an old sandbox never unplugs a newer sandbox
holding the same endpoint name, and GC can tell which attachments of a configuration are
still valid. The plugin protocol itself lives in ``hostagent/cni.py``.

Published ports (the ``portMappings`` capability) are recorded on the interface with the
rest and published once the endpoint is ready, all or none: a refused one (a host port taken
elsewhere: the controller's 409) unplugs the attachment again and fails the ADD with the
controller's message. DEL unpublishes them, only where they are still this endpoint's.
"""

from __future__ import annotations

import logging
from typing import Any

from hostagent.agent import Agent
from hostagent.client import ControllerError
from hostagent.edges import PortRecord
from hostagent.errors import (
    AgentError,
    Conflict,
    ControllerUnavailable,
    InvalidRequest,
    LinkError,
    NotFound,
    NotReady,
    OvsError,
)
from hostagent.plug import EXT_ENDPOINT, EXT_NETWORK, PlugRequest, device_names
from hostagent.publish import EXT_PUBLISHED, PortMap, decode, encode, publish_all, unpublish_all

log = logging.getLogger("hostagent.cni")

CNI_CONTAINER = "vxplane-cni-container"
CNI_IFNAME = "vxplane-cni-ifname"
CNI_CONFIG = "vxplane-cni-config"
CNI_NETNS = "vxplane-cni-netns"


class CheckFailed(AgentError):
    """CHECK found the attachment different from what it should be."""

    status = 409


class NotAvailable(AgentError):
    """STATUS: the agent cannot serve ADD for this network right now."""

    status = 503


def cni_code(exc: AgentError) -> int:
    """The CNI error code for an agent error (``hostagent/cni.py`` lists them)."""
    from hostagent import cni

    if isinstance(exc, NotAvailable):
        return cni.NOT_AVAILABLE
    if isinstance(exc, CheckFailed):
        return cni.NOT_AS_EXPECTED
    if isinstance(exc, ControllerUnavailable | NotReady):
        return cni.TRY_AGAIN
    if isinstance(exc, NotFound):
        return cni.UNKNOWN_CONTAINER
    if isinstance(exc, ControllerError):
        return cni.ADDRESS_CONFLICT if exc.status == 409 else cni.INVALID_CONFIG
    if isinstance(exc, Conflict):
        return cni.ADDRESS_CONFLICT
    if isinstance(exc, InvalidRequest):
        return cni.INVALID_CONFIG
    if isinstance(exc, OvsError | LinkError):
        return cni.IO_FAILURE
    return cni.IO_FAILURE


class CniService:
    """CNI verbs of one agent."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def _cni_ports(self) -> dict[str, PortRecord]:
        ports = self.agent.ovs.ports(self.agent.bridge)
        return {p.name: p for p in ports if CNI_CONTAINER in p.external_ids}

    def add(
        self,
        netns: str,
        name: str,
        network: str,
        ifname: str,
        container_id: str,
        config: str,
        ip: str | None = None,
        labels: dict[str, str] | None = None,
        ports: list[PortMap] | None = None,
    ) -> dict[str, Any]:
        """Plug the attachment, labelled as this CNI attachment's, and publish its ``ports``;
        returns once ready (unplugged again if a port cannot be published)."""
        runtime_ids = {
            CNI_CONTAINER: container_id, CNI_IFNAME: ifname, CNI_CONFIG: config, CNI_NETNS: netns,
        }  # fmt: skip
        if ports:
            runtime_ids[EXT_PUBLISHED] = encode(ports)
        ep = self.agent.attach(
            PlugRequest(
                network=network, name=name, netns=netns, ifname=ifname, ip=ip,
                labels=labels, runtime_ids=runtime_ids,
            )
        )  # fmt: skip
        if ports:
            try:
                publish_all(self.agent.client, network, name, ports)
            except ControllerError as exc:
                self.agent.detach(network, name)
                raise Conflict(f"cannot publish the ports of {name}: {exc.detail}") from exc
            except BaseException:
                self.agent.detach(network, name)
                raise
        host_if, _ = device_names(network, name)
        return {"endpoint": ep.to_api(), "mtu": self.agent.settings.mtu, "port_name": host_if}

    def delete(
        self,
        name: str,
        network: str,
        ifname: str,
        container_id: str,
        config: str,
        release: bool,
        published: list[PortMap] | None = None,
    ) -> dict[str, Any]:
        """Unplug the attachment (idempotent) and, with ``release``, free the address unless
        the name is bound on some host by now (checked by the controller in the deleting
        transaction: a bind that comes in between keeps its address)."""
        ports = self._cni_ports()
        for row in ports.values():
            ids = row.external_ids
            if (ids.get(CNI_CONTAINER), ids.get(CNI_IFNAME), ids.get(CNI_CONFIG)) == (
                container_id,
                ifname,
                config,
            ):
                network, name = ids.get(EXT_NETWORK, network), ids.get(EXT_ENDPOINT, name)
                published = [*(published or []), *decode(ids.get(EXT_PUBLISHED))]
                break
        else:
            port = ports.get(device_names(network, name)[0])
            owner = port.external_ids if port is not None else {}
            if owner and owner.get(CNI_CONTAINER) != container_id:
                log.info(
                    "host %s: CNI DEL of %s/%s by %s: now held by %s; left alone",
                    self.agent.host, network, name, container_id, owner.get(CNI_CONTAINER),
                )  # fmt: skip
                return {"network": network, "name": name, "detached": False, "released": False}
        if published:  # only those still this endpoint's (not a port that refused its ADD)
            unpublish_all(self.agent.client, network, name, sorted(set(published)))
        out = self.agent.detach(network, name)
        released = False
        if release:
            try:
                self.agent.client.delete_endpoint(network, name, if_unbound=True)
                released = True
            except ControllerError as exc:
                if exc.status not in (404, 409):  # 409: bound on some host now, kept
                    raise
        return {**out, "released": released}

    def check(
        self, netns: str, name: str, network: str, ifname: str, container_id: str, config: str
    ) -> dict[str, Any]:
        """CheckFailed unless the attachment is plugged, bound here, ready and configured."""
        if not self.agent.links.netns_exists(netns):
            raise NotFound(f"network namespace {netns} does not exist")
        host_if, _ = device_names(network, name)
        row = self._cni_ports().get(host_if)
        if row is None:
            raise CheckFailed(f"{network}/{name}: no port {host_if} on {self.agent.bridge}")
        if row.external_ids.get(CNI_CONTAINER) != container_id:
            raise CheckFailed(f"{network}/{name} belongs to container {row.external_ids}")
        try:
            ep = self.agent.client.get_endpoint(network, name)
        except ControllerError as exc:
            raise CheckFailed(f"{network}/{name}: controller: {exc.detail}") from exc
        if (ep.host, ep.ofport, ep.state) != (self.agent.host, row.ofport, "ready"):
            raise CheckFailed(
                f"{network}/{name}: controller has host {ep.host} ofport {ep.ofport} state "
                f"{ep.state}, expected {self.agent.host} ofport {row.ofport} ready"
            )
        link = self.agent.links.get_link(ifname, netns)
        if link is None:
            raise CheckFailed(f"no interface {ifname} in {netns}")
        mtu = self.agent.settings.mtu
        if link.mac.lower() != ep.mac or link.mtu != mtu:
            raise CheckFailed(
                f"{ifname} in {netns} has MAC {link.mac} MTU {link.mtu}, "
                f"expected {ep.mac} MTU {mtu}"
            )
        have = self.agent.links.ipv4_addresses(ifname, netns)
        if ep.interface not in have:
            raise CheckFailed(
                f"{ifname} in {netns} has {[str(a) for a in have]}, expected {ep.interface}"
            )
        want6 = ep.interface6
        if want6 is not None:
            have6 = self.agent.links.ipv6_addresses(ifname, netns)
            if want6 not in have6:
                raise CheckFailed(
                    f"{ifname} in {netns} has {[str(a) for a in have6]}, expected {want6}"
                )
        return {"endpoint": ep.to_api(), "mtu": mtu, "port_name": host_if}

    def gc(self, config: str, valid: list[tuple[str, str]], release: bool) -> dict[str, Any]:
        """Remove ``config``'s attachments that are not in ``valid`` (container id, ifname;
        an empty ifname keeps every attachment of that container)."""
        keep = set(valid)
        removed, errors = [], []
        for row in self._cni_ports().values():
            ids = row.external_ids
            if ids.get(CNI_CONFIG) != config:
                continue
            key = (ids.get(CNI_CONTAINER, ""), ids.get(CNI_IFNAME, ""))
            if key in keep or (key[0], "") in keep:  # no ifname given: any of the container's
                continue
            try:
                self.delete(
                    ids.get(EXT_ENDPOINT, ""), ids.get(EXT_NETWORK, ""), key[1], key[0], config,
                    release,
                )  # fmt: skip
                removed.append({"container_id": key[0], "ifname": key[1]})
            except AgentError as exc:
                errors.append(f"{key[0]}/{key[1]}: {exc.detail}")
        if errors:
            raise OvsError(f"GC removed {len(removed)}, failed: {'; '.join(errors)}")
        return {"removed": removed}

    def status(self, network: str) -> dict[str, Any]:
        """NotAvailable unless the bridge is up, the host registered and ``network`` known."""
        health = self.agent.health()
        if not health["bridge_ready"] or not health["registered"]:
            raise NotAvailable(
                f"host {self.agent.host}: bridge ready {health['bridge_ready']}, registered "
                f"{health['registered']} ({health['last_error']})"
            )
        try:
            self.agent.client.get_network(network)
        except ControllerError as exc:
            raise NotAvailable(f"network {network}: {exc.detail}") from exc
        except ControllerUnavailable as exc:
            raise NotAvailable(exc.detail) from exc
        return health
