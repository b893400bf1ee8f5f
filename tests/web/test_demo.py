"""`appliance demo`: the calls are there to find and play, the line goes on ringing."""

import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx

from appliance.web import demo

WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_demo_serves_its_calls_on_loopback(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "demo", "--data", str(data), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    out = process.stdout
    assert out is not None

    def pump() -> None:
        for line in out:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        printed, passphrase, deadline = [], "", time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            line = lines.get(timeout=deadline - time.monotonic())
            printed.append(line)
            if found := re.match(r"Log in as demo, passphrase (\S+)", line):
                passphrase = found[1]
            if line.startswith("web page: "):
                break
        text = "".join(printed)
        assert f"web page: http://127.0.0.1:{port}/" in text, text
        assert "!!" not in text and passphrase, text
        assert (data / demo.MARKER).is_file()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            for _ in range(50):  # uvicorn binds a moment after printing
                try:
                    page = client.get("/login")
                    break
                except httpx.ConnectError:
                    time.sleep(0.1)
            assert page.status_code == 200 and 'name="passphrase"' in page.text
            # the session cookies are Secure (__Host-): carried by hand over loopback HTTP
            jar = {"__Host-login": page.cookies["__Host-login"]}
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]  # type: ignore[index]
            answer = client.post(
                "/login",
                data={"user": "demo", "passphrase": passphrase, "csrf": token},
                headers={"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())},
            )
            assert answer.status_code == 303, answer.text
            cookie = {"cookie": f"__Host-session={answer.cookies['__Host-session']}"}
            calls = client.get("/calls", headers=cookie).text
            ids = re.findall(r'href="/calls/([^"?/]+)" class="call-link"', calls)
            assert len(ids) >= 4, calls  # the four demo calls at least
            played = None
            for call_id in ids:
                page = client.get(f"/calls/{call_id}", headers=cookie)
                if found := re.search(r'src="(/calls/[^"]+/audio\?play=[^"]+)"', page.text):
                    played = client.get(found[1], headers=cookie | {"range": "bytes=0-"})
                    break
            assert played is not None, "no demo call has a recording to play"
            assert played.status_code == 206
            assert played.content[:4] == b"RIFF" and played.content[8:12] == b"WAVE"
            assert len(played.content) > 44 + 16000  # more than a second of PCM16
            status = client.get("/status", headers=cookie).text
            assert "last heartbeat" in status  # the live line's recorder is running
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode in (0, 130), process.stderr.read() if process.stderr else ""
