"""Raw Ethernet frames in a lab namespace: capture what arrives, send forged frames.

The port-security tests (IPv4 and IPv6) forge frames a container's stack would never send and
watch what the other containers receive. Root only; traffic stays inside the lab's
namespaces.
"""

from __future__ import annotations

import select
import socket
import time

from hostagent.netlink import entered_netns
from vxlab import fabric

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # sll_pkttype of a frame this socket's interface sent


def mac_bytes(text: str) -> bytes:
    """``"0a:58:..."`` -> 6 bytes."""
    return bytes.fromhex(text.replace(":", ""))


class Capture:
    """Frames arriving on ``ifname`` in namespace ``netns`` from now on (a packet socket)."""

    def __init__(self, netns: str, ifname: str = "eth0") -> None:
        with entered_netns(fabric.netns_path(netns)):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.bind((ifname, 0))
        self.frames: list[bytes] = []

    def drain(self, seconds: float = 1.5) -> list[bytes]:
        """Wait ``seconds`` and return every frame received (not sent) so far."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.sock], [], [], left)[0]:
                break
            frame, addr = self.sock.recvfrom(65535)
            if addr[2] != PACKET_OUTGOING:
                self.frames.append(frame)
        return self.frames

    def close(self) -> None:
        self.sock.close()


def send_frames(netns: str, frames: list[bytes], ifname: str = "eth0", repeat: int = 3) -> None:
    """Send raw ``frames`` out of ``ifname`` in ``netns``, each ``repeat`` times."""
    with entered_netns(fabric.netns_path(netns)):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sock.bind((ifname, 0))
    with sock:
        for _ in range(repeat):
            for frame in frames:
                assert sock.send(frame) == len(frame)
            time.sleep(0.1)
