"""Flow values -> OpenFlow 1.3 wire messages, built with os-ken's parser.

With ``ofapp`` the only modules that import os_ken. A flow-mod is serialized once per
distinct flow (cached by cookie, with xid 0) and copied with the xid patched in, so a flow
shared by many switches is built once: os-ken's message building dominates the CPU cost of
pushing flows (DESIGN.md, "Controller internals"). The cache keeps ``ADD_CACHE`` flows, the
ones most recently sent: the flows shared by many switches (about 2 per host of the
cluster) stay in it; an endpoint's own flows, sent to one switch, pass through (at 200,000
entries, 1,000 hosts x 50 endpoints kept about 54 MiB more: ``bench.memory --add-cache``).

ONF bundles (the OpenFlow 1.3 extension EXT-230, which OVS implements: experimenter
``0x4f4e4600``, ``ONF_ET_BUNDLE_CONTROL`` 2300 and ``ONF_ET_BUNDLE_ADD_MESSAGE`` 2301) are
packed here the same way, as raw bytes around the cached flow-mods: a bundle-add carries the
whole inner message, whose xid is the bundle-add's own (the extension requires it), so an
error about the inner message names the xid the engine gave the flow.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from os_ken.ofproto import nx_actions  # noqa: F401  (registers Nicira actions)
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from controller.flows import Action, Conjunction, Ct, Flow, Output, RegMove, SetField

_DESC = ProtocolDesc(ofp.OFP_VERSION)
ALL_COOKIES = 0xFFFFFFFFFFFFFFFF
_XID = struct.Struct("!I")

ONF_EXPERIMENTER = 0x4F4E4600
BUNDLE_CONTROL, BUNDLE_ADD = 2300, 2301  # ONF_ET_BUNDLE_CONTROL, ONF_ET_BUNDLE_ADD_MESSAGE
BUNDLE_OPEN, BUNDLE_OPEN_REPLY = 0, 1  # ONF_BCT_*
BUNDLE_COMMIT, BUNDLE_COMMIT_REPLY = 4, 5
BUNDLE_DISCARD, BUNDLE_DISCARD_REPLY = 6, 7
BUNDLE_ATOMIC_ORDERED = 3  # ONF_BF_ATOMIC | ONF_BF_ORDERED
BUNDLE_FAILED = 2313  # ONFERR_ET_FAILED: a commit that applied nothing
_BUNDLE_CTRL = struct.Struct("!BBHIIIIHH")  # header, experimenter, exp_type, id, type, flags
_BUNDLE_ADD = struct.Struct("!BBHIIII2xH")  # header, experimenter, exp_type, id, pad, flags


# OVS's neighbour discovery fields os-ken does not know: the OXM class 0x1000 (ERICOXM_OF),
# field number and width in bytes (OVS meta-flow.h, since OVS 2.11).
ERICOXM_OF = 0x1000
ERICSSON_FIELDS = {"nd_reserved": (1, 4), "nd_options_type": (2, 1)}


class RawSetField(parser.OFPAction):  # type: ignore[misc]
    """An OFPAT_SET_FIELD of an OXM that os-ken has no name for, packed by hand (os-ken's
    action list only calls ``serialize`` and reads ``len``; not registered for parsing)."""

    cls_action_type = ofp.OFPAT_SET_FIELD
    cls_action_len = 8

    def __init__(self, oxm_class: int, field: int, width: int, value: int) -> None:
        super().__init__()
        oxm = struct.pack("!I", (oxm_class << 16) | (field << 9) | width)
        self.body = oxm + value.to_bytes(width, "big")
        self.len = (4 + len(self.body) + 7) // 8 * 8

    def serialize(self, buf: bytearray, offset: int) -> None:
        """Write the action at ``offset`` of ``buf`` (padded to 8 bytes)."""
        data = struct.pack("!HH", self.type, self.len) + self.body
        data += bytes(self.len - len(data))
        if len(buf) < offset + self.len:
            buf.extend(bytes(offset + self.len - len(buf)))
        buf[offset : offset + self.len] = data


def _action(a: Action) -> Any:
    if isinstance(a, Output):
        return parser.OFPActionOutput(a.port, ofp.OFPCML_NO_BUFFER)
    if isinstance(a, SetField) and a.field in ERICSSON_FIELDS:
        number, width = ERICSSON_FIELDS[a.field]
        assert isinstance(a.value, int)
        return RawSetField(ERICOXM_OF, number, width, a.value)
    if isinstance(a, SetField):
        return parser.OFPActionSetField(**{a.field: a.value})
    if isinstance(a, RegMove):
        return parser.NXActionRegMove(
            src_field=a.src, dst_field=a.dst, n_bits=a.n_bits, src_ofs=a.src_ofs, dst_ofs=a.dst_ofs
        )
    if isinstance(a, Ct):
        return _ct(a)
    if isinstance(a, Conjunction):  # the wire's clause is 0-based (OVS prints it + 1)
        return parser.NXActionConjunction(clause=a.clause - 1, n_clauses=a.n_clauses, id_=a.id)
    raise TypeError(f"unknown action {a!r}")


NX_CT_F_COMMIT = 1
NX_CT_RECIRC_NONE = 0xFF
NX_NAT_F_SRC = 1
NX_NAT_F_DST = 2


def _ct(a: Ct) -> Any:
    inner: list[Any] = []
    if a.mark is not None:  # before nat: os-ken 4.2.2 cannot parse a nat followed by more
        inner.append(parser.OFPActionSetField(ct_mark=a.mark))
    if a.nat is not None:
        kw: dict[str, Any] = {}
        if a.nat.ip and ":" in a.nat.ip:
            kw.update(range_ipv6_min=a.nat.ip, range_ipv6_max=a.nat.ip)
        elif a.nat.ip:
            kw.update(range_ipv4_min=a.nat.ip, range_ipv4_max=a.nat.ip)
        if a.nat.port_lo:
            kw.update(range_proto_min=a.nat.port_lo, range_proto_max=a.nat.port_hi)
        flags = {"": 0, "src": NX_NAT_F_SRC, "dst": NX_NAT_F_DST}[a.nat.kind]
        inner.append(parser.NXActionNAT(flags=flags, **kw))
    return parser.NXActionCT(
        flags=NX_CT_F_COMMIT if a.commit else 0,
        zone_src="",
        zone_ofs_nbits=a.zone,
        recirc_table=NX_CT_RECIRC_NONE if a.table is None else a.table,
        alg=0,
        actions=inner,
    )


def flow_mod(f: Flow, datapath: Any = _DESC) -> Any:
    """The OFPFC_ADD message for ``f`` (cookie = its content hash)."""
    inst: list[Any] = []
    if f.actions:
        inst.append(
            parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [_action(a) for a in f.actions])
        )
    if f.write_metadata is not None:
        inst.append(parser.OFPInstructionWriteMetadata(*f.write_metadata))
    if f.goto is not None:
        inst.append(parser.OFPInstructionGotoTable(f.goto))
    return parser.OFPFlowMod(
        datapath,
        cookie=f.cookie,
        cookie_mask=0,
        table_id=f.table,
        command=ofp.OFPFC_ADD,
        priority=f.priority,
        buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(**dict(f.match)),
        instructions=inst,
    )


ADD_CACHE = 1 << 15  # serialized flow-mods kept: the shared ones of up to ~16,000 hosts


@lru_cache(maxsize=ADD_CACHE)
def _flow_add_bytes(f: Flow) -> bytes:
    msg = flow_mod(f)
    msg.set_xid(0)
    msg.serialize()
    return bytes(msg.buf)


def delete_by_cookie(cookie: int, datapath: Any = _DESC) -> Any:
    """An OFPFC_DELETE of exactly the flow(s) carrying ``cookie``, in every table."""
    return parser.OFPFlowMod(
        datapath,
        cookie=cookie,
        cookie_mask=ALL_COOKIES,
        table_id=ofp.OFPTT_ALL,
        command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(),
    )


def _with_xid(buf: bytes, xid: int) -> bytes:
    out = bytearray(buf)
    _XID.pack_into(out, 4, xid)
    return bytes(out)


def add_bytes(f: Flow, xid: int) -> bytes:
    """Wire bytes of the add of ``f`` with transaction id ``xid``."""
    return _with_xid(_flow_add_bytes(f), xid)


@lru_cache(maxsize=1)
def _delete_template() -> bytes:
    msg = delete_by_cookie(0)
    msg.set_xid(0)
    msg.serialize()
    return bytes(msg.buf)


_COOKIE = struct.Struct("!Q")  # ofp_flow_mod's cookie, right after the 8-byte header


def delete_bytes(cookie: int, xid: int) -> bytes:
    """Wire bytes of the delete of ``cookie`` with transaction id ``xid``: os-ken's message
    serialized once, its xid and cookie set in a copy (building and serializing an
    ``OFPFlowMod`` per delete was 3 % of the controller's samples in a batch churn)."""
    out = bytearray(_delete_template())
    _XID.pack_into(out, 4, xid)
    _COOKIE.pack_into(out, 8, cookie)
    return bytes(out)


def xid_of(message: bytes) -> int:
    """The transaction id in a message's header."""
    return int(_XID.unpack_from(message, 4)[0])


def barrier_bytes(xid: int) -> bytes:
    """Wire bytes of a barrier request."""
    msg = parser.OFPBarrierRequest(_DESC)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def bundle_ctrl_bytes(bundle_id: int, kind: int, xid: int) -> bytes:
    """Wire bytes of a bundle control request (``BUNDLE_OPEN``, ``_COMMIT``, ``_DISCARD``),
    atomic and ordered, without properties."""
    return _BUNDLE_CTRL.pack(
        ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, _BUNDLE_CTRL.size, xid, ONF_EXPERIMENTER,
        BUNDLE_CONTROL, bundle_id, kind, BUNDLE_ATOMIC_ORDERED,
    )  # fmt: skip


def bundle_add_bytes(bundle_id: int, inner: bytes) -> bytes:
    """Wire bytes of a bundle-add carrying the whole message ``inner`` (its xid is reused)."""
    (xid,) = _XID.unpack_from(inner, 4)
    size = _BUNDLE_ADD.size + len(inner)
    if size > 0xFFFF:
        raise ValueError(f"a bundle-add of {size} bytes does not fit in one message")
    head = _BUNDLE_ADD.pack(
        ofp.OFP_VERSION, ofp.OFPT_EXPERIMENTER, size, xid, ONF_EXPERIMENTER, BUNDLE_ADD,
        bundle_id, BUNDLE_ATOMIC_ORDERED,
    )  # fmt: skip
    return head + inner


def flow_stats_request(datapath: Any) -> Any:
    """A request for every flow of every table (we read back only the cookies)."""
    return parser.OFPFlowStatsRequest(
        datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch()
    )
