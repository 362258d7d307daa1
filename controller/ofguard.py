"""PURE: what a switch's OpenFlow message may reach os-ken's parser; checked on the raw bytes.

os-ken's parsers trust the lengths inside a message: a zero-length instruction, action,
hello element or multipart entry makes them loop for ever while allocating (1 GiB in 9 s,
from one TCP connection; DESIGN.md). ``check`` looks at one whole message, as framed by its
header, before any parsing, and answers with a ``Verdict``:

- ``CLOSE`` with a reason: the message is malformed; the connection is closed.
- ``DROP``: well formed enough, but of a kind the controller never asks for and never uses
  (packet-in, flow-removed, port-status, experimenter, other multipart replies, any
  controller-to-switch type, any other version after the hello): it is not parsed at all.
- ``PARSE``: a fixed-size or opaque message os-ken may parse (hello, error, echo, features,
  get-config, barrier and role replies).
- ``BUNDLE`` (an ONF bundle control reply: open, commit or discard, with its bundle id, type
  and flags): 24 bytes plus properties whose lengths add up; the caller builds the reply from
  these values. Any other experimenter message is dropped.
- ``COOKIES`` (a flow-stats reply, with its flags and cookies) and ``PORTS`` (a port-desc
  reply, with its flags): the lengths of every entry, match, instruction and action were
  checked, and the caller builds the reply itself from these values, so os-ken's
  instruction and action parsers (and their Nicira sub-parsers, some of which nest action
  lists) never see a switch's flow table, and a port list never grows os-ken's port map.

No os-ken import: ``ofapp`` applies the verdict (``ofapp.install_guard``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

OFP13 = 4
HEADER = struct.Struct("!BBHI")
HEADER_SIZE = 8

# message types (OpenFlow 1.3)
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, EXPERIMENTER = 0, 1, 2, 3, 4
FEATURES_REPLY, GET_CONFIG_REPLY = 6, 8
MULTIPART_REPLY, BARRIER_REPLY, ROLE_REPLY = 19, 21, 25
# multipart types
MP_FLOW, MP_PORT_DESC = 1, 13

HELLO_FAILED = 0  # error type whose data os-ken decodes as ASCII
FLOW_STATS_FIXED = 48  # ofp_flow_stats up to its match
PORT_SIZE = 64  # ofp_port
APPLY_ACTIONS, WRITE_ACTIONS = 4, 3
ONF_EXPERIMENTER, ONF_BUNDLE_CONTROL = 0x4F4E4600, 2300
BUNDLE_CTRL_SIZE = 24  # header, experimenter, exp_type, bundle id, type, flags
# the smallest legal size of each fixed-size message os-ken parses
MIN_SIZE = {
    ERROR: 12,
    FEATURES_REPLY: 32,
    GET_CONFIG_REPLY: 12,
    MULTIPART_REPLY: 16,
    ROLE_REPLY: 24,
}


class Action(Enum):
    """What to do with a message."""

    PARSE = "parse"
    DROP = "drop"
    CLOSE = "close"
    COOKIES = "cookies"
    PORTS = "ports"
    BUNDLE = "bundle"


@dataclass(frozen=True, slots=True)
class Verdict:
    """``check``'s answer; ``flags`` and ``cookies`` are set for COOKIES and PORTS,
    ``flags``, ``bundle_id`` and ``bundle_type`` for BUNDLE."""

    action: Action
    reason: str = ""
    flags: int = 0
    cookies: tuple[int, ...] = ()
    bundle_id: int = 0
    bundle_type: int = 0


PARSE = Verdict(Action.PARSE)
DROP = Verdict(Action.DROP)


class Malformed(ValueError):
    """A length inside the message does not add up."""


def _close(reason: str) -> Verdict:
    return Verdict(Action.CLOSE, reason)


def check(buf: bytes) -> Verdict:
    """The verdict on one whole OpenFlow message ``buf`` (header included) from a switch."""
    if len(buf) < HEADER_SIZE:
        return _close(f"{len(buf)} bytes: shorter than a header")
    version, mtype, length, _ = HEADER.unpack_from(buf)
    if length != len(buf):
        return _close(f"header length {length}, message {len(buf)} bytes")
    try:
        if mtype == HELLO:  # any version: the hello is what negotiates it
            _hello_elements(buf)
            return PARSE
        if mtype == ERROR:
            return _error(buf)
        if version != OFP13:
            return DROP
        if mtype in (ECHO_REQUEST, ECHO_REPLY, BARRIER_REPLY):
            return PARSE
        if mtype in (FEATURES_REPLY, GET_CONFIG_REPLY, ROLE_REPLY):
            _at_least(buf, MIN_SIZE[mtype])
            return PARSE
        if mtype == MULTIPART_REPLY:
            return _multipart(buf)
        if mtype == EXPERIMENTER:
            return _experimenter(buf)
    except Malformed as exc:
        return _close(str(exc))
    return DROP


def _at_least(buf: bytes, size: int) -> None:
    if len(buf) < size:
        raise Malformed(f"type {buf[1]}: {len(buf)} bytes, at least {size} expected")


def _hello_elements(buf: bytes) -> None:
    off = HEADER_SIZE
    while off < len(buf):
        if off + 4 > len(buf):
            raise Malformed("hello element header cut short")
        _, elen = struct.unpack_from("!HH", buf, off)
        if elen < 4 or off + elen > len(buf):
            raise Malformed(f"hello element of length {elen} at offset {off}")
        off += elen


def _error(buf: bytes) -> Verdict:
    _at_least(buf, MIN_SIZE[ERROR])
    (etype,) = struct.unpack_from("!H", buf, HEADER_SIZE)
    if etype == HELLO_FAILED and not buf[12:].isascii():
        raise Malformed("hello-failed error with non-ASCII text")
    return PARSE


def _experimenter(buf: bytes) -> Verdict:
    if len(buf) < 16:
        raise Malformed(f"experimenter message of {len(buf)} bytes")
    experimenter, exp_type = struct.unpack_from("!II", buf, HEADER_SIZE)
    if (experimenter, exp_type) != (ONF_EXPERIMENTER, ONF_BUNDLE_CONTROL):
        return DROP
    _at_least(buf, BUNDLE_CTRL_SIZE)
    bundle_id, btype, flags = struct.unpack_from("!IHH", buf, 16)
    off = BUNDLE_CTRL_SIZE
    while off < len(buf):  # properties: type, length (>= 4), padded to 8
        if off + 4 > len(buf):
            raise Malformed(f"bundle property header cut short at offset {off}")
        (plen,) = struct.unpack_from("!H", buf, off + 2)
        if plen < 4 or off + plen > len(buf):
            raise Malformed(f"bundle property of length {plen} at offset {off}")
        off += (plen + 7) // 8 * 8
    return Verdict(Action.BUNDLE, flags=flags, bundle_id=bundle_id, bundle_type=btype)


def _multipart(buf: bytes) -> Verdict:
    _at_least(buf, MIN_SIZE[MULTIPART_REPLY])
    mptype, flags = struct.unpack_from("!HH", buf, HEADER_SIZE)
    if mptype == MP_FLOW:
        return Verdict(Action.COOKIES, flags=flags, cookies=tuple(_flow_stats(buf, 16)))
    if mptype == MP_PORT_DESC:
        if (len(buf) - 16) % PORT_SIZE:
            raise Malformed(f"port-desc body of {len(buf) - 16} bytes: not whole ports")
        return Verdict(Action.PORTS, flags=flags)
    return DROP


def _flow_stats(buf: bytes, off: int) -> list[int]:
    """The cookies of a flow-stats body, every length inside it checked."""
    cookies = []
    while off < len(buf):
        if off + FLOW_STATS_FIXED + 8 > len(buf):
            raise Malformed(f"flow-stats entry at {off} cut short")
        (elen,) = struct.unpack_from("!H", buf, off)
        if elen < FLOW_STATS_FIXED + 8 or elen % 8 or off + elen > len(buf):
            raise Malformed(f"flow-stats entry of length {elen} at offset {off}")
        (cookie,) = struct.unpack_from("!Q", buf, off + 24)
        end = off + elen
        inst = _match(buf, off + FLOW_STATS_FIXED, end)
        _instructions(buf, inst, end)
        cookies.append(cookie)
        off = end
    return cookies


def _match(buf: bytes, off: int, end: int) -> int:
    """Check an ofp_match (type OXM) at ``off``; returns the offset after its padding."""
    mtype, mlen = struct.unpack_from("!HH", buf, off)
    padded = (mlen + 7) // 8 * 8
    if mtype != 1 or mlen < 4 or off + padded > end:
        raise Malformed(f"match of type {mtype} length {mlen} at offset {off}")
    pos, stop = off + 4, off + mlen
    while pos < stop:
        if pos + 4 > stop:
            raise Malformed(f"match field header cut short at offset {pos}")
        flen = buf[pos + 3]
        if pos + 4 + flen > stop:
            raise Malformed(f"match field of length {flen} at offset {pos}")
        pos += 4 + flen
    return off + padded


def _instructions(buf: bytes, off: int, end: int) -> None:
    while off < end:
        if off + 8 > end:
            raise Malformed(f"instruction cut short at offset {off}")
        itype, ilen = struct.unpack_from("!HH", buf, off)
        if ilen < 8 or ilen % 8 or off + ilen > end:
            raise Malformed(f"instruction of type {itype} length {ilen} at offset {off}")
        if itype in (APPLY_ACTIONS, WRITE_ACTIONS):
            _actions(buf, off + 8, off + ilen)
        off += ilen


def _actions(buf: bytes, off: int, end: int) -> None:
    while off < end:
        if off + 8 > end:
            raise Malformed(f"action cut short at offset {off}")
        atype, alen = struct.unpack_from("!HH", buf, off)
        if alen < 8 or alen % 8 or off + alen > end:
            raise Malformed(f"action of type {atype} length {alen} at offset {off}")
        off += alen
