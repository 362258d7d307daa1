"""Flow values -> OpenFlow 1.3 wire messages, built with os-ken's parser.

With ``ofapp`` the only modules that import os_ken. A flow-mod is serialized once per
distinct flow (cached by cookie, with xid 0) and copied with the xid patched in, so a flow
shared by many switches is built once: os-ken's message building dominates the CPU cost of
pushing flows (DESIGN.md, "Controller internals").
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import Any

from os_ken.ofproto import nx_actions  # noqa: F401  (registers Nicira actions)
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from controller.flows import Action, Flow, Output, RegMove, SetField

_DESC = ProtocolDesc(ofp.OFP_VERSION)
ALL_COOKIES = 0xFFFFFFFFFFFFFFFF
_XID = struct.Struct("!I")


def _action(a: Action) -> Any:
    if isinstance(a, Output):
        return parser.OFPActionOutput(a.port, ofp.OFPCML_NO_BUFFER)
    if isinstance(a, SetField):
        return parser.OFPActionSetField(**{a.field: a.value})
    if isinstance(a, RegMove):
        return parser.NXActionRegMove(
            src_field=a.src, dst_field=a.dst, n_bits=a.n_bits, src_ofs=a.src_ofs, dst_ofs=a.dst_ofs
        )
    raise TypeError(f"unknown action {a!r}")


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


@lru_cache(maxsize=200_000)
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


def delete_bytes(cookie: int, xid: int) -> bytes:
    """Wire bytes of the delete of ``cookie`` with transaction id ``xid``."""
    msg = delete_by_cookie(cookie)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def barrier_bytes(xid: int) -> bytes:
    """Wire bytes of a barrier request."""
    msg = parser.OFPBarrierRequest(_DESC)
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def flow_stats_request(datapath: Any) -> Any:
    """A request for every flow of every table (we read back only the cookies)."""
    return parser.OFPFlowStatsRequest(
        datapath, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch()
    )
