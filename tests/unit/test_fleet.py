"""bench.fleet's switch model: flow-mods as the controller encodes them, dumps os-ken parses."""

from __future__ import annotations

from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser
from os_ken.ofproto.ofproto_parser import msg as parse_msg

from bench.fleet import FlowEntry, FlowKey, apply_flow_mod, flow_stats_replies
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
