"""The os-ken application: thin handlers that hand switch events to the flow engine.

Handlers stay short (all of os-ken's switches share one event thread); the engine's own
worker does the computing and sending. ``start_openflow`` runs os-ken inside the controller
process with the native-thread hub (os-ken 4.x has no ``osken-manager``).
"""

from __future__ import annotations

import logging
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import (
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    HANDSHAKE_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
)
from os_ken.ofproto import ofproto_v1_3

from controller import ofmsg
from controller.engine import Engine

log = logging.getLogger(__name__)


class _Conn:
    """Adapts an os-ken Datapath to ``engine.SwitchConn``."""

    def __init__(self, dp: Any) -> None:
        self.dp = dp
        self.dpid: int = dp.id
        self.address = f"{dp.address[0]}:{dp.address[1]}" if dp.address else "?"

    def send(self, data: bytes) -> bool:
        return bool(self.dp.send(data))

    def request_flow_dump(self) -> None:
        self.dp.send_msg(ofmsg.flow_stats_request(self.dp))


class VxplaneOFApp(app_manager.OSKenApp):  # type: ignore[misc]
    """Recognises switches and forwards their events to the engine."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    engine: Engine | None = None  # set by start_openflow before os-ken instantiates the app

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert VxplaneOFApp.engine is not None, "start_openflow() sets the engine"
        self.engine_ = VxplaneOFApp.engine
        self.conns: dict[int, _Conn] = {}

    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _features(self, ev: Any) -> None:
        dp = ev.msg.datapath
        conn = _Conn(dp)
        self.conns[dp.id] = conn
        self.engine_.switch_connected(conn)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev: Any) -> None:
        msg = ev.msg
        more = bool(msg.flags & ofproto_v1_3.OFPMPF_REPLY_MORE)
        self.engine_.switch_dump(msg.datapath.id, [s.cookie for s in msg.body], more)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier(self, ev: Any) -> None:
        self.engine_.barrier_reply(ev.msg.datapath.id, ev.msg.xid)

    @set_ev_cls(
        ofp_event.EventOFPErrorMsg, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER]
    )
    def _error(self, ev: Any) -> None:
        msg = ev.msg
        text = f"type={msg.type} code={msg.code}"
        if msg.datapath.id is not None:
            self.engine_.switch_error(msg.datapath.id, msg.xid, text)
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


def start_openflow(
    engine: Engine, host: str, port: int, echo_interval: float = 2.0, echo_misses: int = 3
) -> list[Any]:
    """Start os-ken's OpenFlow listener and our app in background threads.

    Echo probing (off in os-ken by default) closes a switch that stops answering after
    ``echo_misses`` probes ``echo_interval`` s apart: a switch whose process died without
    closing its TCP connection must not count as connected (it would hold back readiness).
    """
    from os_ken import cfg

    conf = cfg.CONF
    if not getattr(start_openflow, "_configured", False):
        conf(args=[], project="os_ken")
        start_openflow._configured = True  # type: ignore[attr-defined]
    conf.set_override("ofp_listen_host", host)
    conf.set_override("ofp_tcp_listen_port", port)
    conf.set_override("echo_request_interval", echo_interval)
    conf.set_override("maximum_unreplied_echo_requests", echo_misses)
    VxplaneOFApp.engine = engine
    mgr = app_manager.AppManager.get_instance()
    mgr.load_apps([__name__])
    contexts = mgr.create_contexts()
    return list(mgr.instantiate_apps(**contexts))
