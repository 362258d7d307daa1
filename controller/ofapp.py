"""The os-ken application: thin handlers that hand switch events to the flow engine.

Handlers stay short (all of os-ken's switches share one event thread); the engine's own
worker does the computing and sending. ``start_openflow`` runs os-ken inside the controller
process with the native-thread hub (os-ken 4.x has no ``osken-manager``), on TCP or, given a
certificate, key and CA, on TLS with client certificates required (os-ken's ``ctl_privkey``,
``ctl_cert`` and ``ca_certs``); a switch's certificate CN is then its ``peer_name``.

``install_guard`` puts ``ofguard.check`` in front of os-ken's message parser: every message
from a switch is length-checked on its raw bytes first; a malformed one closes that
connection, and flow-stats and port-desc replies are built from the checked values instead
of being parsed by os-ken. It also gives every new connection a deadline: one that has not
sent its features reply (finished the OpenFlow handshake) in time is closed, so silent
connections cannot pile up (os-ken itself waits for ever).

Every connection is a ``VxDatapath``: os-ken's Datapath with the send path and echo probing
of ``controller.ofconn`` (a send queue bounded in bytes that never blocks the engine, one
prober thread for all switches instead of one per switch), and the listening socket's
backlog is raised to ``LISTEN_BACKLOG`` (os-ken's is 50: a thousand switches connecting at
once overflow it, and their connects are dropped and retried seconds later).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import ssl
import struct
import termios
import threading
import time
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.controller import Datapath
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    HANDSHAKE_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.lib import hub
from os_ken.ofproto import ofproto_parser, ofproto_v1_3
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller import ofguard, ofmsg
from controller.engine import Engine
from controller.ofconn import Budget, Prober, SendQueue
from controller.roles import Roles

log = logging.getLogger(__name__)

LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
WRITE_SLICE = 256 * 1024  # bytes per socket write (a timeout retries the same slice)
_prober = Prober()
_budget = Budget()  # every switch's send queue together (``start_openflow`` wires its drain)
_TCP_BYTES = struct.Struct("QQ")  # struct tcp_info: tcpi_bytes_acked, tcpi_bytes_received
_TCP_BYTES_AT, _TCP_INFO_LEN = 120, 136  # their offset (Linux >= 4.1), the length needed
_OUTQ_BUSY = 4096  # bytes in the kernel's send queue that mean a batch, not echo requests


class VxDatapath(Datapath):  # type: ignore[misc]
    """os-ken's Datapath with ``ofconn``'s send queue and the shared echo prober."""

    def __init__(self, sock: Any, address: Any) -> None:
        super().__init__(sock, address)
        self.out = SendQueue(on_drained=self._drained, budget=_budget)
        self.on_drained: Any = None  # set once the engine knows the switch
        self.received = 0  # messages from the switch (counted by the guard)
        self.idle = 0

    # -- send path -------------------------------------------------------------------------
    def send(self, buf: Any, close_socket: bool = False) -> bool:
        verdict = self.out.put(bytes(buf), close_socket)
        if verdict == "overflow":
            log.warning(
                "switch %s from %s: over %d bytes queued, closing (it resyncs when it "
                "reconnects)", _dpid(self), self.address, self.out.cap,
            )  # fmt: skip
            self.out.close()
            _shutdown(self.socket)
        return verdict == "ok"

    def _send_loop(self) -> None:
        out = self.out
        try:
            while (item := out.get()) is not None:
                data, close_after = item
                self._write(data)
                out.done(len(data))
                if close_after:
                    break
        except OSError as exc:
            log.debug("switch %s: send failed: %s", _dpid(self), exc)
        finally:
            out.close()
            self._close_write()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        off = 0
        while off < len(view):
            try:
                off += self.socket.send(view[off : off + WRITE_SLICE])
            except TimeoutError:  # a slow reader: the prober decides when it is gone
                if self.out.closed:
                    raise OSError("connection closing") from None

    def _drained(self) -> None:
        if self.on_drained is not None:
            self.on_drained()

    # -- probing (ofconn.Probed) -----------------------------------------------------------
    def activity(self) -> int:
        # Bytes the switch acknowledged and bytes it sent (TCP_INFO: tcpi_bytes_acked and
        # tcpi_bytes_received, also under TLS); not what we handed to the kernel, which keeps
        # taking echo requests for a switch that is gone.
        try:
            info = self.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except (OSError, ValueError):
            return self.received
        if len(info) < _TCP_INFO_LEN:
            return self.received
        acked, got = _TCP_BYTES.unpack_from(info, _TCP_BYTES_AT)
        return int(self.received + acked + got)

    def unread(self) -> int:
        try:
            buf = fcntl.ioctl(self.socket.fileno(), termios.FIONREAD, b"\0\0\0\0")
            pending = getattr(self.socket, "pending", None)  # TLS: decrypted, not yet read
            return int(struct.unpack("i", buf)[0]) + (pending() if pending else 0)
        except (OSError, ValueError):
            return 0

    def backlogged(self) -> bool:
        if self.out.queued:
            return True
        try:
            buf = fcntl.ioctl(self.socket.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
            # unsent or unacknowledged bytes, more than a few echo requests to a dead switch
            return int(struct.unpack("i", buf)[0]) > _OUTQ_BUSY
        except (OSError, ValueError):
            return False

    def send_echo(self) -> None:
        self.send_msg(self.ofproto_parser.OFPEchoRequest(self))

    def expire(self, reason: str) -> None:
        log.warning("switch %s from %s: %s, closing", _dpid(self), self.address, reason)
        _shutdown(self.socket)

    def serve(self) -> None:
        send_thr = hub.spawn(self._send_loop)
        self.send_msg(self.ofproto_parser.OFPHello(self))
        _prober.add(self)
        try:
            self._recv_loop()
        finally:
            _prober.discard(self)
            self.out.close()
            hub.joinall([send_thr])
            self.is_active = False


def _dpid(dp: Any) -> str:
    return f"{dp.id:016x}" if dp.id is not None else "(no dpid yet)"


def datapath_factory(sock: Any, address: Any) -> None:
    """os-ken's ``datapath_connection_factory`` with a ``VxDatapath``."""
    with contextlib.closing(VxDatapath(sock, address)) as dp:
        try:
            dp.serve()
        except Exception:
            log.exception("switch %s from %s: connection failed", _dpid(dp), address)


class _Conn:
    """Adapts an os-ken Datapath to ``engine.SwitchConn``."""

    def __init__(self, dp: Any, dpid: int) -> None:
        self.dp = dp
        self.dpid = dpid
        self.address = f"{dp.address[0]}:{dp.address[1]}" if dp.address else "?"
        self.peer_name = peer_common_name(dp.socket)

    def send(self, data: bytes) -> bool:
        return bool(self.dp.send(data))

    def congested(self) -> bool:
        out = getattr(self.dp, "out", None)
        return bool(out is not None and out.blocked())

    def request_flow_dump(self) -> None:
        self.dp.send_msg(ofmsg.flow_stats_request(self.dp))

    def request_role(self, role: int, generation: int) -> bool:
        request = parser.OFPRoleRequest(self.dp, role, generation & 0xFFFFFFFFFFFFFFFF)
        return bool(self.dp.send_msg(request))

    def missed_echo(self) -> bool:
        # The prober counts the periods without a sign of life: two means an echo went a
        # whole period unanswered. A connection whose receive loop already ended (its socket
        # is closed) counts too.
        dp = self.dp
        return getattr(dp, "idle", 0) >= 2 or not dp.is_active or dp.socket.fileno() < 0

    def close(self) -> None:
        # Shut the socket down instead of Datapath.close(): that queues a state change to
        # the apps and blocks while their queue is full, and this may run on the apps' own
        # event thread. os-ken's receive loop sees the end and closes the datapath itself.
        # (socket.socket's shutdown also for TLS: SSLSocket's would drop its SSL state under
        # the reading thread.)
        _shutdown(self.dp.socket)


def _shutdown(sock: Any) -> None:
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except (OSError, TypeError):
        pass


def peer_common_name(sock: Any) -> str | None:
    """The CN of the peer's TLS certificate (None over plain TCP or without one)."""
    getpeercert = getattr(sock, "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        cert = getpeercert() or {}
    except (OSError, ValueError):
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class VxplaneOFApp(app_manager.OSKenApp):  # type: ignore[misc]
    """Recognises switches and forwards their events to the engine."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    engine: Engine | None = None  # set by start_openflow before os-ken instantiates the app
    roles: Roles | None = None  # likewise; None: the only controller, no role requests

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert VxplaneOFApp.engine is not None, "start_openflow() sets the engine"
        self.engine_ = VxplaneOFApp.engine
        self.roles_ = VxplaneOFApp.roles
        self.conns: dict[int, _Conn] = {}

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev: Any) -> None:
        # The dpid from the reply itself: os-ken sets ``datapath.id`` in its own handler of
        # this message, which may run after ours (seen at 1,000 switches: a None dpid).
        dp, dpid = ev.msg.datapath, ev.msg.datapath_id
        conn = _Conn(dp, dpid)
        if self.engine_.switch_connected(conn):
            self.conns[dpid] = conn
            engine = self.engine_
            dp.on_drained = lambda: engine.switch_drained(dpid)
            if self.roles_ is not None:
                self.roles_.connected(conn)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def _role(self, ev: Any) -> None:
        msg = ev.msg
        conn = self.conns.get(msg.datapath.id)
        if self.roles_ is not None and conn is not None and conn.dp is msg.datapath:
            self.roles_.reply(msg.datapath.id, conn, msg.role, msg.generation_id)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev: Any) -> None:
        msg = ev.msg
        more = bool(msg.flags & ofproto_v1_3.OFPMPF_REPLY_MORE)
        cookies = getattr(msg, "vxplane_cookies", None)  # the guard's, without os-ken objects
        if cookies is None:
            cookies = [s.cookie for s in msg.body]
        self.engine_.switch_dump(msg.datapath.id, cookies, more)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier(self, ev: Any) -> None:
        self.engine_.barrier_reply(ev.msg.datapath.id, ev.msg.xid)

    @set_ev_cls(ofp_event.EventONFBundleCtrlMsg, MAIN_DISPATCHER)
    def _bundle(self, ev: Any) -> None:
        self.engine_.bundle_reply(ev.msg.datapath.id, ev.msg.xid, ev.msg.type)

    @set_ev_cls(
        ofp_event.EventOFPErrorMsg, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER]
    )
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        code = getattr(msg, "code", None)  # an experimenter error has exp_type instead
        text = f"type={msg.type} code={code if code is not None else msg.exp_type}"
        dpid = msg.datapath.id
        conn = self.conns.get(dpid) if dpid is not None else None
        if (
            self.roles_ is not None
            and conn is not None
            and conn.dp is msg.datapath
            and code is not None
            and self.roles_.error(dpid, conn, msg.type, code)
        ):
            return  # IS_SLAVE or a refused role request: handled by stepping down
        if dpid is not None:
            self.engine_.switch_error(dpid, msg.xid, text)
        else:
            log.error("OpenFlow error before features from %s: %s", msg.datapath.address, text)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state(self, ev: Any) -> None:
        dp = ev.datapath
        if ev.state == DEAD_DISPATCHER and dp.id is not None:
            conn = self.conns.get(dp.id)
            if conn is not None and conn.dp is dp:
                del self.conns[dp.id]
                self.engine_.switch_disconnected(dp.id, conn)
                if self.roles_ is not None:
                    self.roles_.disconnected(dp.id, conn)


_guard_lock = threading.Lock()


class _Deadlines:
    """Connections that must finish the OpenFlow handshake by a deadline; one reaper thread."""

    def __init__(self) -> None:
        self.timeout = 10.0
        self._lock = threading.Lock()
        self._open: dict[int, tuple[float, Any, Any]] = {}  # id(socket) -> (deadline, ...)
        self._reaper: threading.Thread | None = None

    def start(self, sock: Any, address: Any) -> None:
        with self._lock:
            self._open[id(sock)] = (time.monotonic() + self.timeout, sock, address)
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="of-deadlines")
                self._reaper.daemon = True
                self._reaper.start()

    def done(self, sock: Any) -> None:
        with self._lock:
            self._open.pop(id(sock), None)

    def _reap(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout / 4))
            now = time.monotonic()
            with self._lock:
                late = [(s, a) for d, s, a in self._open.values() if d <= now]
                for sock, _ in late:
                    self._open.pop(id(sock), None)
            for sock, address in late:
                log.warning(
                    "connection from %s: no OpenFlow handshake within %.0f s, closing",
                    address, self.timeout,
                )  # fmt: skip
                _shutdown(sock)  # its receive loop sees the end and exits


_deadlines = _Deadlines()


_in_factory = threading.local()  # set once a connection got past TLS into os-ken's factory


def _logged_server(base: Any) -> Any:
    """os-ken's StreamServer, but a TLS handshake that fails (a certificate from another CA,
    none at all, not TLS) is logged as a refused switch instead of escaping its thread."""

    class LoggedStreamServer(base):  # type: ignore[misc, valid-type]
        vxplane_guard = True

        def __init__(self, listen_info: Any, handle: Any = None, *args: Any, **kw: Any) -> None:
            super().__init__(listen_info, handle, *args, **kw)
            self.server.listen(LISTEN_BACKLOG)  # os-ken listens with a backlog of 50
            inner: Any = self.handle  # type: ignore[has-type]

            def handle_logged(sock: Any, address: Any) -> None:
                _in_factory.entered = False
                try:
                    inner(sock, address)
                except (ssl.SSLError, OSError) as exc:
                    if getattr(_in_factory, "entered", False):
                        raise
                    log.warning(
                        "switch connection from %s refused: TLS handshake failed (%s)",
                        address, getattr(exc, "reason", None) or exc,
                    )  # fmt: skip
                    try:
                        sock.close()
                    except OSError:
                        pass

            self.handle = handle_logged

    return LoggedStreamServer


def install_guard(handshake_timeout: float = 10.0) -> None:
    """Put ``ofguard.check`` in front of os-ken's message parser, and a handshake deadline
    on every new connection (once per process).

    os-ken's receive loop calls ``ofproto_parser.msg`` for every message a switch sends;
    the guard answers instead of it for every message that is not plainly safe to parse.
    """
    from os_ken.controller import controller

    _deadlines.timeout = handshake_timeout
    with _guard_lock:
        if not getattr(ofproto_parser.msg, "vxplane_guard", False):
            ofproto_parser.msg = _guarded(ofproto_parser.msg)
        factory = controller.datapath_connection_factory
        if not getattr(factory, "vxplane_guard", False):
            controller.datapath_connection_factory = _with_deadline(datapath_factory)
        if not getattr(controller.StreamServer, "vxplane_guard", False):
            controller.StreamServer = _logged_server(controller.StreamServer)


def _with_deadline(factory: Any) -> Any:
    def connection(sock: Any, address: Any) -> Any:
        _in_factory.entered = True
        _deadlines.start(sock, address)
        try:
            return factory(sock, address)
        finally:
            _deadlines.done(sock)

    connection.vxplane_guard = True  # type: ignore[attr-defined]
    return connection


def _guarded(parse: Any) -> Any:
    def msg(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: Any) -> Any:
        if datapath.state == DEAD_DISPATCHER:
            return None  # closing: parse nothing more from it
        if isinstance(datapath, VxDatapath):
            datapath.received += 1  # a sign of life for the prober
        verdict = ofguard.check(bytes(buf[:msg_len]))
        action = verdict.action
        if action is ofguard.Action.PARSE:
            if msg_type == ofguard.FEATURES_REPLY:
                _deadlines.done(datapath.socket)  # the handshake is done
            return parse(datapath, version, msg_type, msg_len, xid, buf)
        if action is ofguard.Action.DROP:
            return None
        if action is ofguard.Action.CLOSE:
            dpid = f"{datapath.id:016x}" if datapath.id is not None else "(no dpid yet)"
            log.warning(
                "switch %s from %s sent a malformed message (%s): closing the connection",
                dpid, datapath.address, verdict.reason,
            )  # fmt: skip
            datapath.close()
            return None
        if action is ofguard.Action.BUNDLE:
            ctrl = parser.ONFBundleCtrlMsg(
                datapath, verdict.bundle_id, verdict.bundle_type, verdict.flags, []
            )
            ctrl.set_headers(version, msg_type, msg_len, xid)
            ctrl.set_buf(buf)
            return ctrl
        if action is ofguard.Action.COOKIES:
            reply = parser.OFPFlowStatsReply(datapath)
            # The cookies alone: an os-ken OFPFlowStats per flow (2,000 per switch at 1,000
            # switches, all again after every re-mastering) took 30 % of the controller's
            # CPU in bench.scale; nothing but the engine reads a flow-stats reply.
            reply.body = []
            reply.vxplane_cookies = verdict.cookies
        else:  # PORTS: os-ken only needs the reply to finish its handshake, not the ports
            reply = parser.OFPPortDescStatsReply(datapath)
            reply.body = []
        reply.set_headers(version, msg_type, msg_len, xid)
        reply.set_buf(buf)
        reply.type = ofguard.MP_FLOW if action is ofguard.Action.COOKIES else ofguard.MP_PORT_DESC
        reply.flags = verdict.flags
        return reply

    msg.vxplane_guard = True  # type: ignore[attr-defined]
    return msg


def start_openflow(
    engine: Engine,
    host: str,
    port: int,
    echo_interval: float = 2.0,
    echo_misses: int = 3,
    tls: tuple[str, str, str] | None = None,
    handshake_timeout: float = 10.0,
    roles: Roles | None = None,
) -> list[Any]:
    """Start os-ken's OpenFlow listener and our app in background threads.

    Echo probing (off in os-ken by default) closes a switch that stops answering after
    ``echo_misses`` probes ``echo_interval`` s apart: a switch whose process died without
    closing its TCP connection must not count as connected (it would hold back readiness).
    ``tls`` = (certificate, key, CA) listens with TLS only and requires a client certificate
    signed by that CA. A connection that has not finished the OpenFlow handshake after
    ``handshake_timeout`` s is closed.
    """
    from os_ken import cfg

    conf = cfg.CONF
    if not getattr(start_openflow, "_configured", False):
        conf(args=[], project="os_ken")
        start_openflow._configured = True  # type: ignore[attr-defined]
    install_guard(handshake_timeout)
    conf.set_override("ofp_listen_host", host)
    conf.set_override("ofp_tcp_listen_port", port)
    if tls is not None:
        cert, key, ca = tls
        conf.set_override("ofp_ssl_listen_port", port)
        conf.set_override("ctl_cert", cert)
        conf.set_override("ctl_privkey", key)
        conf.set_override("ca_certs", ca)  # makes os-ken require the client's certificate
    conf.set_override("echo_request_interval", echo_interval)
    conf.set_override("maximum_unreplied_echo_requests", echo_misses)
    _prober.interval, _prober.misses = echo_interval, echo_misses
    _budget.on_drained = engine.budget_drained
    VxplaneOFApp.engine = engine
    VxplaneOFApp.roles = roles
    mgr = app_manager.AppManager.get_instance()
    mgr.load_apps([__name__])
    contexts = mgr.create_contexts()
    return list(mgr.instantiate_apps(**contexts))
