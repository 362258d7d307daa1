"""bench.fleet's switch model: flow-mods and bundles as the controller encodes them, answers
os-ken parses."""

from __future__ import annotations

import struct
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser
from os_ken.ofproto.ofproto_parser import msg as parse_msg

from bench.fleet import FlowEntry, FlowKey, Switch, apply_flow_mod, flow_stats_replies
from controller import ofmsg
from controller.flows import Flow


class _Datapath:
    ofproto = ofp
    ofproto_parser = ofproto_v1_3_parser


def _flow(i: int, cookie: int) -> Flow:
    return Flow(table=i % 5, priority=100 + i, match=(("in_port", i + 1),), cookie=cookie)


def _add(f: Flow) -> bytes:
    """The add's body (``ofmsg.add_bytes`` caches by flow content, which ignores the cookie)."""
    m = ofmsg.flow_mod(f)
    m.set_xid(1)
    m.serialize()
    return bytes(m.buf)[8:]


def _table(n: int) -> dict[FlowKey, FlowEntry]:
    table: dict[FlowKey, FlowEntry] = {}
    for i in range(n):
        apply_flow_mod(table, _add(_flow(i, 1000 + i)))
    return table


def _dump(table: dict[FlowKey, FlowEntry]) -> list[Any]:
    return [
        parse_msg(_Datapath, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, len(r), 9, r)
        for r in flow_stats_replies(9, table)
    ]


def test_add_replaces_same_key_and_delete_by_cookie_removes_only_that_flow() -> None:
    table = _table(10)
    apply_flow_mod(table, _add(_flow(0, 77)))  # same key, new cookie
    assert len(table) == 10
    apply_flow_mod(table, ofmsg.delete_bytes(1000, 2)[8:])  # replaced: nothing carries it
    assert len(table) == 10
    apply_flow_mod(table, ofmsg.delete_bytes(77, 3)[8:])
    apply_flow_mod(table, ofmsg.delete_bytes(1005, 4)[8:])
    assert sorted(e.cookie for e in table.values()) == [1000 + i for i in (1, 2, 3, 4, 6, 7, 8, 9)]


def test_big_dump_is_split_with_the_more_flag_and_carries_every_cookie() -> None:
    table = _table(3000)
    replies = _dump(table)
    assert len(replies) > 1
    assert [r.flags for r in replies] == [ofp.OFPMPF_REPLY_MORE] * (len(replies) - 1) + [0]
    cookies = [s.cookie for r in replies for s in r.body]
    assert sorted(cookies) == [1000 + i for i in range(3000)]
    assert replies[0].body[0].match["in_port"] == 1


def test_empty_dump_is_one_reply_without_more() -> None:
    (reply,) = _dump({})
    assert reply.flags == 0 and reply.body == []


def _run(sw: Switch, data: bytes) -> list[Any]:
    """Feed the controller's bytes to ``sw``; its answers as os-ken parses them."""
    out: list[Any] = []
    off = 0
    while off < len(data):
        _, mtype, length, xid = struct.unpack_from("!BBHI", data, off)
        for r in sw.handle(mtype, xid, data[off + 8 : off + length]):
            out.append(parse_msg(_Datapath, ofp.OFP_VERSION, r[1], len(r), ofmsg.xid_of(r), r))
        off += length
    return out


def _bundle(bid: int, flows: list[Flow], first_xid: int = 100) -> bytes:
    adds = [ofmsg.bundle_add_bytes(bid, _with_xid(f, first_xid + i)) for i, f in enumerate(flows)]
    return ofmsg.bundle_ctrl_bytes(bid, ofmsg.BUNDLE_OPEN, 1) + b"".join(adds)


def _with_xid(f: Flow, xid: int) -> bytes:
    m = ofmsg.flow_mod(f)
    m.set_xid(xid)
    m.serialize()
    return bytes(m.buf)


def test_bundle_commit_applies_every_add_at_once_and_discard_none() -> None:
    sw = Switch(1)
    flows = [_flow(i, 500 + i) for i in range(20)]
    replies = _run(sw, _bundle(7, flows) + ofmsg.barrier_bytes(2))
    assert [type(r).__name__ for r in replies] == ["ONFBundleCtrlMsg", "OFPBarrierReply"]
    assert replies[0].type == ofp.ONF_BCT_OPEN_REPLY and sw.flows == {}, "nothing before commit"
    (commit,) = _run(sw, ofmsg.bundle_ctrl_bytes(7, ofmsg.BUNDLE_COMMIT, 3))
    assert (commit.type, commit.bundle_id, commit.xid) == (ofp.ONF_BCT_COMMIT_REPLY, 7, 3)
    assert sorted(e.cookie for e in sw.flows.values()) == [500 + i for i in range(20)]
    _run(sw, _bundle(8, [_flow(30, 999)]))
    (discard,) = _run(sw, ofmsg.bundle_ctrl_bytes(8, ofmsg.BUNDLE_DISCARD, 4))
    assert discard.type == ofp.ONF_BCT_DISCARD_REPLY and len(sw.flows) == 20
    assert (sw.commits, sw.discards, sw.bundles) == (1, 1, {})


def test_bundle_errors_name_the_refused_message_and_a_failed_commit_applies_nothing() -> None:
    sw = Switch(1, max_flows=5)
    _opened, exists = _run(sw, _bundle(7, []) + ofmsg.bundle_ctrl_bytes(7, ofmsg.BUNDLE_OPEN, 9))
    assert (exists.type, exists.exp_type, exists.xid) == (0xFFFF, ofp.ONFERR_ET_BUNDLE_EXIST, 9)
    (bad_id,) = _run(sw, ofmsg.bundle_add_bytes(8, _with_xid(_flow(0, 1), 42)))
    assert (bad_id.exp_type, bad_id.xid) == (ofp.ONFERR_ET_BAD_ID, 42)
    _run(sw, b"".join(ofmsg.bundle_add_bytes(7, _with_xid(_flow(i, i), 50 + i)) for i in range(6)))
    full, failed = _run(sw, ofmsg.bundle_ctrl_bytes(7, ofmsg.BUNDLE_COMMIT, 60))
    assert (full.type, full.code, full.xid) == (ofp.OFPET_FLOW_MOD_FAILED, 1, 55), "the 6th add"
    assert (failed.exp_type, failed.xid) == (ofmsg.BUNDLE_FAILED, 60)
    assert sw.flows == {} and sw.commits == 0


def test_a_switch_without_bundles_refuses_every_bundle_message() -> None:
    sw = Switch(1, refuse_bundles=True)
    replies = _run(sw, _bundle(7, [_flow(0, 1)]))
    assert [(r.type, r.code, r.xid) for r in replies] == [(1, 3, 1), (1, 3, 100)]
    assert sw.flows == {}


def _role(sw: Switch, conn: object, role: int, gen: int) -> tuple[int, int, int]:
    """(message type, role, generation) of the switch's answer to a role request."""
    (out,) = sw.handle(ofp.OFPT_ROLE_REQUEST, 5, struct.pack("!I4xQ", role, gen), conn)
    if out[1] == ofp.OFPT_ERROR:
        etype, code = struct.unpack_from("!HH", out, 8)
        return out[1], etype, code
    got_role, got_gen = struct.unpack_from("!I4xQ", out, 8)
    return out[1], got_role, got_gen


def test_roles_as_ovs_master_demotes_the_other_slave_is_refused_old_generation_stale() -> None:
    sw, a, b = Switch(1), object(), object()
    add = _add(_flow(0, 1))
    assert sw.handle(ofp.OFPT_FLOW_MOD, 1, add, a) == [] and len(sw.flows) == 1  # EQUAL writes
    assert _role(sw, a, ofp.OFPCR_ROLE_MASTER, 10) == (
        ofp.OFPT_ROLE_REPLY,
        ofp.OFPCR_ROLE_MASTER,
        10,
    )
    assert _role(sw, b, ofp.OFPCR_ROLE_SLAVE, 10)[1] == ofp.OFPCR_ROLE_SLAVE
    (refused,) = sw.handle(ofp.OFPT_FLOW_MOD, 2, _add(_flow(1, 2)), b)
    assert refused[1] == ofp.OFPT_ERROR
    assert struct.unpack_from("!HH", refused, 8) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE)
    assert len(sw.flows) == 1 and sw.refused_slave == 1
    stale = _role(sw, b, ofp.OFPCR_ROLE_MASTER, 9)
    assert stale == (ofp.OFPT_ERROR, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE)
    assert _role(sw, b, ofp.OFPCR_ROLE_MASTER, 11)[1] == ofp.OFPCR_ROLE_MASTER
    assert sw.role_of(a) == ofp.OFPCR_ROLE_SLAVE and sw.masters() == 1  # a demoted
    assert _role(sw, a, ofp.OFPCR_ROLE_NOCHANGE, 0)[1:] == (ofp.OFPCR_ROLE_SLAVE, 11)
    assert sw.handle(ofp.OFPT_FLOW_MOD, 3, _add(_flow(1, 2)), b) == [] and len(sw.flows) == 2
    sw.closed(b)  # the master's connection dies: nobody is promoted, the flows stay
    assert sw.masters() == 0 and sw.role_of(a) == ofp.OFPCR_ROLE_SLAVE and len(sw.flows) == 2
    assert _role(sw, a, ofp.OFPCR_ROLE_MASTER, 11)[1] == ofp.OFPCR_ROLE_MASTER  # not older
