"""systemd's notify protocol: READY once started, WATCHDOG while healthy, STOPPING on the way out.

Ten lines of the documented datagram protocol (sd_notify(3)) rather than a dependency: the one
package on PyPI for it has not been released since 2017. Without ``$NOTIFY_SOCKET`` (not under
systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send ``message`` (e.g. "READY=1") to systemd; False when not run by systemd or on failure."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """How often to pet the watchdog: half of ``$WATCHDOG_USEC``, or None when there is none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6
