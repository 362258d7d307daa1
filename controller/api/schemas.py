"""Pydantic request and response bodies of the REST API (Create/Update/Public), per docs/api.md."""

from __future__ import annotations

import re
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)

from controller.config import MAX_RESERVATION_TTL
from controller.ipam import MAX_VNI, MIN_VNI
from controller.model import EndpointState
from vxcommon.labels import (
    LABEL_KEY_MAX,
    LABEL_PREFIX_MAX,
    LABEL_VALUE_MAX,
    LABELS_MAX,
    check_label_key,
    check_label_value,
)
from vxcommon.names import ENDPOINT_NAME_PATTERN, NAME_PATTERN, check_endpoint_name, check_name

MAX_OFPORT = 65279  # OVS refuses higher port numbers (0xfeff; 65534 is a bridge's LOCAL)
_DPID_RE = re.compile(r"^(0x)?[0-9a-fA-F]{1,16}$")


def _subnet(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length: write it like 10.0.0.0/24")
    try:
        return IPv4Network(value)
    except ValueError:
        pass
    try:
        loose = IPv4Network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 subnet like 10.0.0.0/24") from None
    raise ValueError(f"{value!r} has host bits set: did you mean {loose}?")


def _subnet6(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length: write it like fd00:10::/64")
    try:
        return IPv6Network(value)
    except ValueError:
        pass
    try:
        loose = IPv6Network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv6 subnet like fd00:10::/64") from None
    raise ValueError(f"{value!r} has host bits set: did you mean {loose}?")


def _address(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return IPv4Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address like 10.0.0.5") from None


def _address6(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        ip = IPv6Address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv6 address like fd00:18::101") from None
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local:
        raise ValueError(f"{value!r} is not a unicast address an egress can have")
    return ip


_BAD_UNDERLAY = (
    ("unspecified", lambda ip: ip.is_unspecified),
    ("broadcast", lambda ip: ip == IPv4Address("255.255.255.255")),
    ("multicast", lambda ip: ip.is_multicast),
    ("loopback", lambda ip: ip.is_loopback),
    ("link-local", lambda ip: ip.is_link_local),
    ("reserved (240.0.0.0/4)", lambda ip: ip.is_reserved),
    ("in 0.0.0.0/8 (this network)", lambda ip: ip in IPv4Network("0.0.0.0/8")),
)


def _underlay(ip: IPv4Address) -> IPv4Address:
    for what, test in _BAD_UNDERLAY:
        if test(ip):
            raise ValueError(
                f"{ip} is {what}: the underlay IP must be the host's unicast address that "
                "other hosts reach it at"
            )
    return ip


def _port_name(value: str) -> str:
    if not value.isprintable() or any(ch.isspace() for ch in value):
        raise ValueError(
            f"{_shown(value)} is not a port name: no control characters or white space"
        )
    return value


def _dpid(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a dpid is a 16-digit hex string like 0000aabbccddeeff")
    if isinstance(value, int):
        if not 0 <= value < 2**64:
            raise ValueError(f"dpid {value} does not fit in 64 bits")
        return value
    if isinstance(value, str):
        text = value.replace(":", "")
        if _DPID_RE.fullmatch(text):
            return int(text, 16)
    raise ValueError(f"{value!r} is not a dpid: write 16 hex digits like 0000aabbccddeeff")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:80] + "...")


def _labels(value: dict[str, str]) -> dict[str, str]:
    if len(value) > LABELS_MAX:
        raise ValueError(f"{len(value)} labels: at most {LABELS_MAX} are allowed")
    for key, text in value.items():
        check_label_key(key)
        check_label_value(key, text)
    return value


# The schema states the rules that JSON Schema can (a pattern); the validators say the rest
# and give the clear message, so ``pattern`` is documented here, not enforced by pydantic.
Name = Annotated[
    str, AfterValidator(check_name), Field(json_schema_extra={"pattern": NAME_PATTERN})
]
EndpointName = Annotated[
    str,
    AfterValidator(check_endpoint_name),
    Field(json_schema_extra={"pattern": ENDPOINT_NAME_PATTERN}),
]
_OCTETS = r"[0-9]{1,3}(\.[0-9]{1,3}){3}"
Subnet = Annotated[
    IPv4Network,
    BeforeValidator(_subnet),
    WithJsonSchema(
        {
            "type": "string",
            "format": "ipv4network",
            "pattern": rf"^{_OCTETS}/([0-9]{{1,2}}|{_OCTETS})$",
            "examples": ["10.10.0.0/24"],
        }
    ),
]
Subnet6 = Annotated[
    IPv6Network,
    BeforeValidator(_subnet6),
    WithJsonSchema(
        {
            "type": "string",
            "format": "ipv6network",
            "pattern": r"^[0-9A-Fa-f:.]{2,45}/[0-9]{1,3}$",
            "examples": ["fd00:10::/64"],
            "description": "IPv6 prefix of at most /96 (the low 32 bits carry each IPv4 "
            "address), not overlapping another network's",
        }
    ),
]
Address = Annotated[IPv4Address, BeforeValidator(_address)]
Address6 = Annotated[IPv6Address, BeforeValidator(_address6)]
UnderlayAddress = Annotated[IPv4Address, BeforeValidator(_address), AfterValidator(_underlay)]
Dpid = Annotated[
    int,
    BeforeValidator(_dpid),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": "^(0x)?[0-9a-fA-F:]{1,23}$"},
                {"type": "integer", "minimum": 0, "maximum": 2**64 - 1},
            ],
            "description": "16 hex digits (colons allowed), or the number",
            "examples": ["0000aabbccddeeff"],
        }
    ),
]
Vni = Annotated[int, Field(ge=MIN_VNI, le=MAX_VNI, strict=True)]
OfPort = Annotated[int, Field(ge=1, le=MAX_OFPORT, strict=True)]
PortName = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_port_name)]
Labels = Annotated[
    dict[str, str],
    AfterValidator(_labels),
    Field(
        description=f"at most {LABELS_MAX}, Kubernetes syntax: keys [prefix/]name, the prefix "
        f"a lowercase DNS subdomain (at most {LABEL_PREFIX_MAX}), the name 1 to "
        f"{LABEL_KEY_MAX} of A-Z a-z 0-9 _ . -; values 0 to {LABEL_VALUE_MAX} of A-Z a-z 0-9 "
        "_ . -; names and values start and end with a letter or digit",
        examples=[{"app": "web", "app.kubernetes.io/part-of": "shop"}],
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class HealthPublic(BaseModel):
    """Liveness of the controller and the current intent revision."""

    status: str = Field(
        description="ok; or degraded: the database cannot be reached, reads come from memory"
    )
    revision: int = Field(description="the database's revision (degraded: the memory's)")
    reason: str | None = Field(None, description="why it is degraded (absent when ok)")


class NetworkCreate(_Body):
    """A new network; gateway, VNI and block size have defaults."""

    name: Name
    subnet: Subnet
    gateway: Address | None = None
    vni: Vni | None = None
    block_prefix: int | None = Field(None, ge=8, le=32, strict=True)
    reclaim: bool = Field(
        False,
        strict=True,
        description="when the subnet is full, a new endpoint may take the address of any "
        "unbound reservation (the oldest); off: only of one older than reservation_ttl",
    )
    reservation_ttl: int | None = Field(
        None,
        ge=0,
        le=MAX_RESERVATION_TTL,
        strict=True,
        description="seconds an unbound endpoint surely keeps its address; after that a full "
        "subnet may reclaim it (0: never; default: the controller's reservation_ttl, 86400)",
    )
    external: bool = Field(
        False,
        strict=True,
        description="its endpoints reach addresses outside the overlay through their own "
        "host's gateway (translated to the host's egress address); off: sealed",
    )
    subnet6: Subnet6 | None = Field(
        None,
        description="dual stack: its IPv6 prefix (at most /96); each endpoint's IPv6 "
        "address is the prefix plus its IPv4 address as the low 32 bits",
    )


class PublicationCreate(_Body):
    """A published port: the endpoint's host accepts ``host_port`` for its ``port``."""

    endpoint: str = Field(min_length=1, max_length=255, description="the endpoint's name")
    host_port: int = Field(
        ge=1,
        le=32767,
        strict=True,
        description="port on the endpoint's host's egress address (32768 and up are the "
        "gateway's source ports)",
    )
    port: int = Field(ge=1, le=65535, strict=True, description="the endpoint's own port")
    proto: Literal["tcp", "udp"] = "tcp"


class PublicationPublic(_Public):
    """A publication and where it is reachable now."""

    network: str
    endpoint: str
    host_port: int
    port: int
    proto: str
    host: str | None = Field(description="the endpoint's host now (null: unbound)")
    address: IPv4Address | None = Field(
        description="that host's egress address: connect to address:host_port"
    )
    address6: IPv6Address | None = Field(
        None,
        description="on a dual-stack network, that host's IPv6 egress address (null: none): "
        "connect to [address6]:host_port",
    )
    created_at: datetime


POLICY_LIST_MAX = 64  # rules per direction, peers per rule, ports per rule


class LabelSelector(_Body):
    """Kubernetes' label selector (``matchLabels`` only): endpoints whose labels include
    every pair; ``{}`` selects every endpoint of the network."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    match_labels: Labels = Field(default_factory=dict, alias="matchLabels")


class PolicyPeerBody(_Body):
    """A peer: the network's endpoints a ``selector`` selects, or the addresses in ``cidr``
    (exactly one of the two)."""

    selector: LabelSelector | None = None
    cidr: Subnet | None = None

    @model_validator(mode="after")
    def _one_of(self) -> PolicyPeerBody:
        if (self.selector is None) == (self.cidr is None):
            raise ValueError("a peer has exactly one of selector or cidr")
        return self


class PolicyPortBody(_Body):
    """A protocol and port (no port: every port of the protocol)."""

    protocol: Literal["tcp", "udp"] = "tcp"
    port: int | None = Field(None, ge=1, le=65535, strict=True)


class IngressRule(_Body):
    """Allow from any of ``from`` (empty or absent: from anywhere) to any of ``ports``
    (empty or absent: every protocol and port)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: list[PolicyPeerBody] = Field(
        default_factory=list, alias="from", max_length=POLICY_LIST_MAX
    )
    ports: list[PolicyPortBody] = Field(default_factory=list, max_length=POLICY_LIST_MAX)


class EgressRule(_Body):
    """Allow to any of ``to`` (empty or absent: anywhere) on any of ``ports`` (empty or
    absent: every protocol and port)."""

    to: list[PolicyPeerBody] = Field(default_factory=list, max_length=POLICY_LIST_MAX)
    ports: list[PolicyPortBody] = Field(default_factory=list, max_length=POLICY_LIST_MAX)


PolicyType = Literal["Ingress", "Egress"]


class PolicySpec(_Body):
    """What a policy says (Kubernetes NetworkPolicy semantics): the endpoints ``selector``
    selects accept (Ingress) or send (Egress) only what some rule of that direction allows;
    endpoints no policy selects stay open. ``policy_types`` defaults as in Kubernetes:
    Ingress, plus Egress when egress rules are given."""

    selector: LabelSelector = Field(default_factory=LabelSelector)
    policy_types: list[PolicyType] | None = Field(None, min_length=1, max_length=2)
    ingress: list[IngressRule] = Field(default_factory=list, max_length=POLICY_LIST_MAX)
    egress: list[EgressRule] = Field(default_factory=list, max_length=POLICY_LIST_MAX)

    @model_validator(mode="after")
    def _types(self) -> PolicySpec:
        if self.policy_types is None:
            self.policy_types = ["Ingress", "Egress"] if self.egress else ["Ingress"]
        if len(set(self.policy_types)) != len(self.policy_types):
            raise ValueError(f"policy_types {self.policy_types} names a type twice")
        for rules, kind in ((self.ingress, "Ingress"), (self.egress, "Egress")):
            if rules and kind not in self.policy_types:
                raise ValueError(
                    f"{kind.lower()} rules are given but policy_types {self.policy_types} "
                    f"lacks {kind}: they would be ignored"
                )
        return self


class PolicyCreate(PolicySpec):
    """A new policy of the network."""

    name: Name


class PolicyPublic(PolicySpec):
    """A policy as stored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    network: str
    name: str
    created_at: datetime


class NetworkUpdate(_Body):
    """What may change of a network (omitted: kept)."""

    external: bool | None = Field(
        None, strict=True, description="true: give its endpoints external access; false: seal it"
    )
    subnet6: Subnet6 | None = Field(
        None,
        description="an IPv6 prefix: the network becomes dual stack (or moves to that prefix); "
        "null: IPv4 only again; omitted: kept. Its endpoints' IPv6 addresses follow",
    )


class NetworkPublic(_Public):
    """A network as the API shows it."""

    name: str
    vni: int
    subnet: IPv4Network
    gateway: IPv4Address
    block_prefix: int
    endpoints: int
    created_at: datetime
    reclaim: bool
    reservation_ttl: int
    external: bool = False
    zone: int | None = Field(
        None, description="its conntrack zone while external (allocated by the controller)"
    )
    subnet6: IPv6Network | None = Field(None, description="its IPv6 prefix (null: IPv4 only)")
    gateway6: IPv6Address | None = Field(
        None, description="its IPv6 gateway: subnet6 plus the IPv4 gateway's low 32 bits"
    )


class HostRegister(_Body):
    """Registration (or update) of a host; omitted dpid and tunnel_port are kept, omitted
    egress_ip and gateway_port mean the host gives no external access."""

    underlay_ip: UnderlayAddress
    dpid: Dpid | None = None
    tunnel_port: OfPort | None = None
    egress_ip: Address | None = Field(
        None,
        description="the address external networks' endpoints leave this host with (its "
        "agent's --egress-ip); needs gateway_port",
    )
    gateway_port: OfPort | None = Field(
        None, description="OpenFlow port of the host's gateway port into its own stack"
    )
    egress_ip6: Address6 | None = Field(
        None,
        description="the IPv6 address external dual-stack networks' endpoints leave this "
        "host with (its agent's --egress-ip6); needs egress_ip",
    )

    @model_validator(mode="after")
    def _egress_pair(self) -> HostRegister:
        if (self.egress_ip is None) != (self.gateway_port is None):
            raise ValueError("egress_ip and gateway_port go together: give both or neither")
        if self.egress_ip6 is not None and self.egress_ip is None:
            raise ValueError("egress_ip6 needs egress_ip (and gateway_port)")
        return self

    cluster_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="the cluster the host's agent belongs to: 409 (nothing changes) unless it "
        "is this controller's database's; omitted: any (a new agent, or one adopting)",
    )


class SwitchPublic(_Public):
    """What the OpenFlow side knows of a host's switch."""

    connected: bool
    address: str | None
    applied_revision: int
    flow_count: int
    rejected_flows: int = Field(
        0, description="flows the switch refused: held back, retried with backoff (see logs)"
    )
    wanted_generation: int = Field(
        0, description="generation of the host's desired flows (bumped when they change)"
    )
    applied_generation: int = Field(
        0, description="the newest generation the switch confirmed (barrier reply)"
    )
    role: Literal["master", "slave", "equal"] | None = Field(
        None,
        description="the answering controller's OpenFlow role on this switch: master (the "
        "switch confirmed it), slave, or equal (not asked yet, or MASTER asked and not yet "
        "answered). A slave reads no flows (flow_count 0) and shows the revision the master "
        "published, so every controller reports the same convergence",
    )


class SwitchMaster(BaseModel):
    """The controller the database names master of a host's switch."""

    id: str = Field(description="its member id (GET /api/v1/controllers)")
    api_url: str = Field(description="where its API answers (--advertise-api)")
    alive: bool = Field(description="its lease has not lapsed (else the switch moves soon)")
    this: bool = Field(description="it is the controller that answered")


HostStatus = Literal["converged", "lagging", "disconnected", "lost"]


class HostPublic(BaseModel):
    """A host as the API shows it; ``dpid`` is 16 hex digits."""

    name: str
    underlay_ip: IPv4Address
    dpid: str | None
    tunnel_port: int
    last_seen: datetime | None
    alive: bool
    switch: SwitchPublic | None
    wanted_revision: int = Field(
        description="the controller's current intent revision: what the switch should apply"
    )
    converged: bool = Field(
        description="the switch is connected and has applied the wanted generation of its "
        "desired flows"
    )
    status: HostStatus = Field(
        description="lost (heartbeat older than host_dead_after), disconnected (switch not "
        "connected), lagging (applied generation < wanted) or converged"
    )
    endpoints: int = Field(description="endpoints bound to this host")
    egress_ip: IPv4Address | None = Field(
        None, description="external networks' endpoints leave this host with this address"
    )
    gateway_port: int | None = None
    egress_ip6: IPv6Address | None = Field(
        None,
        description="external dual-stack networks' endpoints leave this host with this "
        "IPv6 address",
    )
    master: SwitchMaster | None = Field(
        None, description="the controller that masters this host's switch (none assigned yet)"
    )
    cluster_id: str | None = Field(
        None, description="the controller database's cluster id (in the registration answer)"
    )


class EventPublic(BaseModel):
    """Something that just changed (see docs/api.md for every type and its data)."""

    id: int = Field(
        description="increases by one per event, one sequence for every controller of the "
        "cluster (kept across restarts)"
    )
    time: datetime
    type: str = Field(examples=["endpoint.moved"])
    summary: str = Field(examples=["endpoint blue/web (10.20.0.2) moved from h1 to h2"])
    data: dict[str, Any]


class EventsRecent(BaseModel):
    """The newest events, oldest first, and the stream's epoch."""

    epoch: str = Field(description="changes when the controller restarts (ids restart)")
    last_id: int
    events: list[EventPublic]


class MovePublic(_Public):
    """One step of an endpoint's history."""

    id: int = Field(description="the step's id: newer steps have larger ids")
    kind: Literal["bound", "moved", "unbound"]
    host: str | None = Field(description="the host it is on after this step (null: unbound)")
    from_host: str | None = Field(description="the host it left (moved, unbound)")
    ofport: int | None
    revision: int
    at: datetime


class EndpointCreate(_Body):
    """A new (or found again) endpoint: optional static IP, host affinity and labels."""

    name: EndpointName
    ip: Address | None = None
    host: Name | None = None
    labels: Labels | None = Field(None, description="replace the endpoint's labels")


class EndpointPatch(_Body):
    """Change an endpoint: its labels (replaced as a whole)."""

    labels: Labels = Field(description="the endpoint's labels from now on (replace them all)")


class BindingUpdate(_Body):
    """Bind an endpoint to a host's OpenFlow port (with ``create=true``: create it first)."""

    host: Name
    ofport: OfPort
    port_name: PortName | None = None
    ip: Address | None = Field(
        None, description="the address the endpoint must hold (a new name is given it)"
    )
    labels: Labels | None = Field(None, description="replace the endpoint's labels")
    if_revision: int | None = Field(
        None,
        ge=0,
        strict=True,
        description="change nothing (409) unless this is the endpoint's current revision; "
        "a name that does not exist has revision 0",
    )
    move: bool = Field(
        False,
        strict=True,
        description="move the endpoint even if it is bound to another host or port (without "
        "this or if_revision, that is 409 with the endpoint as it is)",
    )


class EndpointPublic(_Public):
    """An endpoint with everything a host needs to configure it."""

    network: str
    name: str
    ip: IPv4Address
    prefixlen: int
    gateway: IPv4Address
    mac: str
    vni: int
    host: str | None
    ofport: int | None
    port_name: str | None
    state: EndpointState
    revision: int
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    labels: dict[str, str] = Field(default_factory=dict)
    ip6: IPv6Address | None = Field(
        None,
        description="its IPv6 address on a dual-stack network: the network's subnet6 plus "
        "its IPv4 address as the low 32 bits (null: IPv4 only)",
    )
    prefixlen6: int | None = Field(None, description="the prefix length of subnet6")
    gateway6: IPv6Address | None = Field(None, description="the network's IPv6 gateway")
    waiting_on: list[str] | None = Field(
        None,
        description="while pending: the hosts whose switches have not yet confirmed the flows "
        "this endpoint's revision changed (empty: confirmed, about to be ready; null: not "
        "pending, or the flow engine has not read that revision yet)",
    )


class EndpointConflict(BaseModel):
    """409 of a binding: with ``if_revision`` not matching, the endpoint as it is now; other
    conflicts (an address or port taken) send ``detail`` only."""

    detail: str
    endpoint: EndpointPublic | None = Field(
        None, description="the endpoint now (stale if_revision; null: the name does not exist)"
    )


class Problem(BaseModel):
    """Every error answer: what is wrong, in one sentence (422: each bad field as
    ``where: what``, joined by '; ')."""

    detail: str


class TokenCreate(_Body):
    """``POST /api/v1/tokens``: an agent token names its host; others none."""

    role: Literal["admin", "agent", "viewer"]
    host: Annotated[str, AfterValidator(check_name)] | None = None
    description: str = Field("", max_length=255)
    expires_in: float | None = Field(
        None, gt=0, le=10 * 365 * 86400, description="seconds until the token stops working"
    )


class TokenRotate(_Body):
    """``POST /api/v1/tokens/{id}/rotate``."""

    grace: float = Field(
        0, ge=0, le=30 * 86400, description="seconds the old token keeps working (0: none)"
    )
    expires_in: float | None = Field(
        None, gt=0, le=10 * 365 * 86400, description="seconds until the new token stops working"
    )


class TokenPublic(_Public):
    """A token as listed: never its secret."""

    id: str
    role: str
    host: str | None
    description: str
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    bootstrap: bool


class TokenCreated(TokenPublic):
    """The answer to a create: the only time the token's text is shown."""

    token: str


class SessionCreate(_Body):
    """``POST /api/v1/session``: the token the dashboard's user typed."""

    token: str = Field(min_length=1, max_length=200)


class SessionPublic(BaseModel):
    """Who the request's token is (``GET /api/v1/session``)."""

    token_id: str
    role: str
    host: str | None
    expires_at: datetime | None


MAX_BATCH_ITEMS = 1000  # items of one POST /api/v1/bindings at most; more: 422


class BindingItem(_Body):
    """One item of a batch: bind ``name`` of ``network`` to ``host``'s ``ofport`` (the fields
    of a single bind, ``create`` included), or with ``unbind`` unbind it if bound to ``host``."""

    network: Name
    name: EndpointName
    host: Name
    ofport: OfPort | None = Field(None, description="required unless unbind")
    port_name: PortName | None = None
    ip: Address | None = None
    labels: Labels | None = None
    if_revision: int | None = Field(None, ge=0, strict=True)
    move: bool = Field(False, strict=True)
    create: bool = Field(False, strict=True, description="create the endpoint if the name is new")
    unbind: bool = Field(
        False, strict=True, description="unbind it if it is bound to host (a no-op if not)"
    )

    @model_validator(mode="after")
    def _bind_or_unbind(self) -> BindingItem:
        if self.unbind:
            extra = [
                field
                for field in ("ofport", "port_name", "ip", "labels", "if_revision")
                if getattr(self, field) is not None
            ] + [field for field in ("move", "create") if getattr(self, field)]
            if extra:
                raise ValueError(f"an unbind item takes network, name and host only, not {extra}")
        elif self.ofport is None:
            raise ValueError("a bind item needs ofport (or unbind: true)")
        return self


class BindingBatch(_Body):
    """``POST /api/v1/bindings``: many binds and unbinds in one request and one transaction."""

    items: list[BindingItem] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BindingOutcome(BaseModel):
    """What became of one item: ``status`` as the single request would have answered (200,
    201 created and bound, 403, 404, 409, 422), the endpoint (also with a 409 about it),
    ``detail`` when it failed."""

    status: int
    endpoint: EndpointPublic | None = None
    detail: str | None = None


class BindingBatchResult(BaseModel):
    """One outcome per item, in the order of the items."""

    items: list[BindingOutcome]


class MasteredSwitch(BaseModel):
    """A switch a controller masters: its dpid and the host it belongs to (if registered)."""

    dpid: str
    host: str | None


class ControllerPublic(BaseModel):
    """A member of the controller cluster (``controllers`` table)."""

    id: str = Field(description="random per controller process start")
    api_url: str = Field(description="where its API answers (--advertise-api)")
    openflow: str = Field(description="its OpenFlow target for switches (--advertise-openflow)")
    alive: bool = Field(description="its lease has not lapsed (database clock)")
    lease_age: float = Field(description="seconds since it last renewed its lease")
    started_at: datetime
    renewed_at: datetime
    expires_at: datetime
    this: bool = Field(description="this is the controller that answered")
    switches: list[MasteredSwitch] = Field(description="the switches it is master of")
