"""What the recorder tells the world while it runs: systemd, and the catalog.

systemd (Type=notify): READY=1 once the first frame came through, WATCHDOG=1 from the
main loop (so a stuck loop is restarted, a busy disk is not), STATUS= in words. The
catalog: a heartbeat with the line's state and the call's phase, which the web page
shows; written on a change and at most every `every` seconds of board time, since each
write is an fsync on the SD card.
"""

import os
import socket
from typing import Any

from appliance.vault.catalog import Catalog


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)  # the recorder never waits for systemd
        try:
            sock.connect(address)
            sock.send(message.encode())
        except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
            return False
    return True


class Heartbeat:
    def __init__(self, catalog: Catalog, every: float = 5.0) -> None:
        self.catalog = catalog
        self.every = every
        self._last: tuple[float, dict[str, Any]] | None = None
        self._ready = False
        watchdog = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        self._watchdog_every = watchdog / 2e6 if watchdog else None
        self._watchdog_last = -1e9

    def beat(self, now: float, status: dict[str, Any]) -> None:
        if not self._ready:
            self._ready = True
            notify("READY=1")
        if self._watchdog_every is not None and now - self._watchdog_last >= self._watchdog_every:
            self._watchdog_last = now
            notify("WATCHDOG=1")
        if self._last is not None and self._last[1] == status and now - self._last[0] < self.every:
            return
        self._last = (now, status)
        self.catalog.publish_status("recorder", {"t": round(now, 2), **status}, durable=False)
        notify("STATUS=" + ", ".join(f"{k} {v}" for k, v in status.items()))
