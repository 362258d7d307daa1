"""The length check in front of os-ken's parser: malformed messages close, unused ones drop,
flow dumps are read without os-ken's instruction parser; and the guard as ofapp installs it."""

from __future__ import annotations

import random
import struct
import threading
from typing import Any

import pytest
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from controller import ofapp
from controller.ofguard import Action, check
from tests import ofswitch as of

ZERO_INSTRUCTION = of.instruction(4, b"", length=0)
ZERO_ACTION = of.apply_actions(struct.pack("!HH4x", 0, 0))


def good_dump() -> bytes:
    return of.flow_stats_reply(
        7,
        [
            of.flow_stats(0x76AA, of.apply_actions(of.action_output(3))),
            of.flow_stats(0x76BB, struct.pack("!HHB3x", 1, 8, 2)),  # goto_table
            of.flow_stats(0x76CC),
        ],
        flags=of.MORE,
    )


def test_well_formed_flow_dump_gives_its_cookies_and_flags() -> None:
    v = check(good_dump())
    assert (v.action, v.cookies, v.flags) == (Action.COOKIES, (0x76AA, 0x76BB, 0x76CC), 1)


@pytest.mark.parametrize(
    "entry",
    [
        of.flow_stats(1, ZERO_INSTRUCTION),  # os-ken's instruction loop: never advances
        of.flow_stats(1, ZERO_ACTION),  # os-ken's action loop: never advances
        of.flow_stats(1, of.instruction(4, b"", length=12)),  # not a multiple of 8
        of.flow_stats(1, of.instruction(4, b"", length=64)),  # beyond its entry
        of.flow_stats(1, length=0),  # os-ken's multipart loop: entry of length 0
        of.flow_stats(1, length=40),  # shorter than the fixed part
        of.flow_stats(1)[:-8] + struct.pack("!HH4x", 1, 0),  # match length 0
        of.flow_stats(1)[:50],  # cut short
    ],
)
def test_malformed_flow_dump_closes(entry: bytes) -> None:
    v = check(of.flow_stats_reply(7, [of.flow_stats(5), entry]))
    assert v.action is Action.CLOSE and v.reason


@pytest.mark.parametrize(
    "message",
    [
        of.hello(elements=struct.pack("!HH", 1, 0)),  # hello element of length 0 (any version)
        of.hello(version=6, elements=struct.pack("!HH", 1, 0)),
        of.hello(elements=struct.pack("!HH", 1, 40)),
        of.msg(of.FEATURES_REPLY, 1, b"\0" * 8),  # fixed size too short
        of.msg(of.ERROR, 1, struct.pack("!HH", 0, 0) + "é".encode()),  # os-ken decodes ASCII
        of.multipart_reply(1, of.MP_PORT_DESC, b"\0" * 10),
        struct.pack("!BBHI", 4, 2, 0, 1),  # header length 0
        struct.pack("!BBHI", 4, 2, 9, 1),  # header says 9, message is 8
    ],
)
def test_malformed_messages_close(message: bytes) -> None:
    assert check(message).action is Action.CLOSE


@pytest.mark.parametrize(
    "message",
    [
        of.msg(10, 1, b"\0" * 40),  # packet-in
        of.msg(12, 1, b"\0" * 72),  # port-status (os-ken would grow its port map)
        of.msg(of.FLOW_MOD, 1, ZERO_INSTRUCTION),  # controller-to-switch types
        of.msg(4, 1, b"\0" * 8),  # experimenter
        of.multipart_reply(1, 7, b"\0" * 8),  # group-desc: buckets of actions
        of.msg(of.ECHO_REQUEST, 1, version=5),  # another version after the hello
    ],
)
def test_messages_the_controller_never_uses_are_dropped(message: bytes) -> None:
    assert check(message).action is Action.DROP


def test_handshake_and_replies_parse() -> None:
    for message in (
        of.hello(elements=struct.pack("!HHI", 1, 8, 0x10)),
        of.hello(version=1),
        of.features_reply(1, 42),
        of.msg(of.ECHO_REQUEST, 1, b"x" * 100),
        of.msg(of.BARRIER_REPLY, 1),
        of.msg(of.ERROR, 1, struct.pack("!HH", 4, 4) + b"\0" * 64),
    ):
        assert check(message).action is Action.PARSE


def test_random_bytes_never_raise() -> None:
    rng = random.Random(8)
    for _ in range(3000):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        mtype = rng.choice([0, 1, 6, 19, 19, 19, rng.randrange(256)])
        if mtype == 19 and len(body) >= 2:
            body = struct.pack("!H", rng.choice([1, 13])) + body[2:]
        check(of.msg(mtype, rng.getrandbits(32), body, rng.choice([4, 4, 1, 6])))


class FakeDatapath(ProtocolDesc):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__(4)
        self.state = MAIN_DISPATCHER
        self.id = 0x2A
        self.address = ("127.0.0.1", 4000)
        self.socket = object()
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self.state = DEAD_DISPATCHER


def _through_guard(message: bytes, dp: FakeDatapath) -> Any:
    guarded = ofapp._guarded(ofproto_parser.msg)
    version, mtype, length, xid = struct.unpack_from("!BBHI", message)
    result: list[Any] = []
    t = threading.Thread(
        target=lambda: result.append(guarded(dp, version, mtype, length, xid, message)),
        daemon=True,
    )
    t.start()
    t.join(5)
    assert not t.is_alive(), "the parser did not return"
    return result[0]


def test_guard_builds_the_flow_dump_reply_without_os_ken_parsing_it() -> None:
    dp = FakeDatapath()
    reply = _through_guard(good_dump(), dp)
    assert isinstance(reply, parser.OFPFlowStatsReply)
    assert reply.vxplane_cookies == (0x76AA, 0x76BB, 0x76CC)  # what ofapp gives the engine
    assert reply.body == [], "no os-ken object per flow"
    assert reply.flags == of.MORE and reply.xid == 7 and not dp.closed


@pytest.mark.parametrize("bad", [ZERO_INSTRUCTION, ZERO_ACTION])
def test_guard_closes_on_zero_length_instruction_or_action(bad: bytes) -> None:
    dp = FakeDatapath()
    assert _through_guard(of.flow_stats_reply(7, [of.flow_stats(1, bad)]), dp) is None
    assert dp.closed
    assert _through_guard(of.features_reply(1, 2), dp) is None, "nothing parsed after closing"


def test_guard_lets_os_ken_parse_the_handshake() -> None:
    reply = _through_guard(of.features_reply(9, 0x1234), FakeDatapath())
    assert isinstance(reply, parser.OFPSwitchFeatures) and reply.datapath_id == 0x1234
    ports = _through_guard(of.multipart_reply(3, of.MP_PORT_DESC, b"\0" * 128), FakeDatapath())
    assert isinstance(ports, parser.OFPPortDescStatsReply) and ports.body == []


def _bundle_reply(bundle_id: int, btype: int, props: bytes = b"", xid: int = 5) -> bytes:
    return of.msg(4, xid, struct.pack("!IIIHH", 0x4F4E4600, 2300, bundle_id, btype, 3) + props)


def test_bundle_control_reply_is_read_with_its_lengths_checked() -> None:
    v = check(_bundle_reply(77, 5))
    assert (v.action, v.bundle_id, v.bundle_type, v.flags) == (Action.BUNDLE, 77, 5, 3)
    prop = struct.pack("!HH4x", 0xFFFF, 8)
    assert check(_bundle_reply(1, 1, prop)).action is Action.BUNDLE
    assert check(_bundle_reply(1, 1, struct.pack("!HH4x", 0xFFFF, 0))).action is Action.CLOSE
    assert check(_bundle_reply(1, 1, struct.pack("!HH", 1, 40))).action is Action.CLOSE
    short = of.msg(4, 1, struct.pack("!IIIH", 0x4F4E4600, 2300, 1, 1))
    assert check(short).action is Action.CLOSE
    add = of.msg(4, 1, struct.pack("!IIIHH", 0x4F4E4600, 2301, 1, 0, 3))  # not a reply kind
    assert check(add).action is Action.DROP


def test_guard_builds_the_bundle_reply_os_ken_dispatches() -> None:
    reply = _through_guard(_bundle_reply(77, 5, xid=9), FakeDatapath())
    assert isinstance(reply, parser.ONFBundleCtrlMsg)
    assert (reply.bundle_id, reply.type, reply.flags, reply.xid) == (77, 5, 3, 9)


def test_features_handler_takes_the_dpid_from_the_reply_not_the_datapath() -> None:
    """os-ken sets datapath.id in its own handler of the features reply, which may run after
    ours: at 1,000 switches a connection reached the engine with dpid None."""
    from types import SimpleNamespace

    dp = FakeDatapath()
    dp.id = None
    seen: list[int] = []
    engine = SimpleNamespace(switch_connected=lambda c: seen.append(c.dpid) or True)
    app = SimpleNamespace(engine_=engine, conns={}, roles_=None)
    ofapp.VxplaneOFApp._features(
        app, SimpleNamespace(msg=SimpleNamespace(datapath=dp, datapath_id=0x77))
    )
    assert seen == [0x77] and list(app.conns) == [0x77]
