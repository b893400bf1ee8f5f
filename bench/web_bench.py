"""The web page under load: login, the calls list over 100 000 sealed calls, search,
time to the first audio byte, and four players streaming at once; then the recorder in
real time while four browsers stream.

A data folder is made in a temporary folder with the vault's own code (keys at the real
scrypt work factor, one admin, one 10-minute recording, 100 000 sealed call records),
served by `appliance web`'s app on uvicorn over HTTPS on 127.0.0.1, and asked over real
connections. Prints one line per figure.

The last part proves no capture frame is lost while four browsers stream: the production
`Recorder` records a consented call in real time in its own process (a `SimBoard` paced
by the wall clock, a codec handing over each 20 ms period as it ends, through the
`Capture` thread), while `appliance web --plain-http --host 127.0.0.1`, another process
over the same data folder, serves four logged-in clients reading a recording with Range
requests in a loop, as fast as it gives (bench/torture/web.py, shared with campaign 6).

    .venv/bin/python bench/web_bench.py [--calls N] [--load-seconds S] [--load-only]
"""

import argparse
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.torture, run as a script

import httpx2 as httpx
import numpy as np
import uvicorn

from appliance.dsp.g711 import ulaw_encode
from appliance.vault import keys
from appliance.vault.calls import store_finished
from appliance.vault.catalog import Catalog
from appliance.vault.recording import RecordingWriter
from appliance.vault.seal import Sealer
from appliance.web import tls
from appliance.web.app import Web, create_app
from bench.torture import web as load
from bench.torture.common import Result

PASSPHRASE = "violet harbour tundra 42"
CALL = "20260301-091500-benchx"
PLAYER = re.compile(r'src="(/calls/[^"]+/audio\?play=[^"]+)"')


def build(data: Path, calls: int) -> None:
    created = keys.init_keys(data)
    (data / "recordings").mkdir()
    with Catalog.open(data) as catalog:
        keys.add_user(data, catalog, "ada", "admin", PASSPHRASE, created.authority)
        sealer = Sealer(catalog, keys.read_recipients(data))
        rows = [
            (
                f"bulk-{i:06d}",
                "incoming",
                1.7e9 + i * 60,
                "granted",
                30.0 + i % 50,
                "not-recorded",
                sealer.key_id,
                sealer.seal(f"bulk-{i:06d}", {"number": f"+1 555 {i:07d}", "name": f"Caller {i}"}),
            )
            for i in range(calls)
        ]
        with catalog.db.atomic():
            catalog.db.conn.executemany(
                "INSERT INTO calls (id, direction, started_at, consent, audio_seconds, status, "
                "seal_key, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        catalog.insert_call({"id": CALL, "started_at": 1.9e9, "status": "recording"})
        t = np.arange(600 * 8000) / 8000
        audio = ulaw_encode(0.3 * np.sin(2 * np.pi * 300 * t)).tobytes()
        with RecordingWriter(str(data / "recordings"), CALL, keys.read_recipients(data)) as w:
            for start in range(0, len(audio), 160):
                w.write(audio[start : start + 160])
            finished = w.close()
        store_finished(catalog, CALL, finished)


def serve(data: Path) -> tuple[str, uvicorn.Server]:
    certificate = tls.ensure_certificate(data)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(Web(data, certificate.fingerprint)),
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(certificate.cert_file),
        ssl_keyfile=str(certificate.key_file),
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"https://127.0.0.1:{port}", server


def login(base: str) -> httpx.Client:
    return load.login(base, "ada", PASSPHRASE)


def timed(client: httpx.Client, url: str, times: int = 5) -> float:
    spent = []
    for _ in range(times):
        start = time.perf_counter()
        answer = client.get(url)
        spent.append(time.perf_counter() - start)
        assert answer.status_code == 200, (url, answer.status_code)
    return statistics.median(spent)


def first_byte(client: httpx.Client) -> float:
    page = client.get(f"/calls/{CALL}").text
    url = PLAYER.search(page)[1]  # type: ignore[index]
    start = time.perf_counter()
    with client.stream("GET", url, headers={"range": "bytes=4000000-"}) as answer:
        next(answer.iter_raw())
        return time.perf_counter() - start


def recorder_under_load(seconds: float) -> bool:
    """The recorder in real time for about `seconds` while four clients stream; prints
    its figures; False if a frame was lost or anything else failed."""
    with tempfile.TemporaryDirectory() as folder:
        box, wav = load.build(Path(folder), 600.0)
        speech = max(1.0, seconds - 10.4)  # ring, announcement, consent: ~10.4 s more
        run = load.under_load(box, wav, speech)
    result = Result("recorder under load")
    load.judge_load(run, result)
    rec = run.recorder
    print(
        f"recorder in real time for {rec['seconds']:.1f} s while four clients stream: "
        f"xruns {rec['xruns']}, frames {rec['frames']:.0f} of {rec['frames expected']} "
        f"expected, {rec['gaps']} gaps"
    )
    print(
        f"recorder's worst lag behind real time: {rec['worst lag (s)'] * 1000:.0f} ms "
        f"(capture thread's latest read after a period's end: "
        f"{rec['latest read (s)'] * 1000:.1f} ms)"
    )
    rates = run.rates()
    plays = sum(s.tally.plays for s in run.streams)
    ranges = sum(s.tally.requests for s in run.streams) - plays
    print(
        f"four streams with Range requests: {' '.join(f'{r:.0f}' for r in rates)}x real "
        f"time ({sum(rates) * load.WAV_RATE / 1e6:.1f} MB/s in all; {plays} play sessions, "
        f"{ranges} Range requests, every byte checked)"
    )
    for failure in result.failures:
        print(f"FAIL {failure}")
    return not result.failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--load-seconds", type=float, default=30.0)
    parser.add_argument("--load-only", action="store_true", help="only the last part")
    args = parser.parse_args()
    if args.load_only:
        raise SystemExit(0 if recorder_under_load(args.load_seconds) else 1)
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        start = time.perf_counter()
        build(data, args.calls)
        made = time.perf_counter() - start
        print(f"data folder with {args.calls} sealed calls made in {made:.1f} s")
        base, server = serve(data)
        try:
            start = time.perf_counter()
            client = login(base)
            print(f"login (scrypt logN {keys.LOG_N}): {time.perf_counter() - start:.2f} s")
            start = time.perf_counter()
            client.get("/calls", params={"q": "Caller 4242"})
            print(
                f"first search after login (fills the index): {time.perf_counter() - start:.1f} s"
            )
            print(f"calls list, page 1: {timed(client, '/calls') * 1000:.0f} ms")
            deep = "/calls?sort=duration&page=1500"
            print(f"calls list sorted by length, page 1500: {timed(client, deep) * 1000:.0f} ms")
            number = "/calls?q=%2B1+555+0054321"
            print(f"search by number: {timed(client, number) * 1000:.0f} ms")
            print(f"search by name: {timed(client, '/calls?q=caller+4242') * 1000:.0f} ms")
            waits = [first_byte(client) for _ in range(10)]
            print(
                f"time to first audio byte (median of 10): {statistics.median(waits) * 1000:.0f} ms"
            )
            players = [login(base) for _ in range(4)]
            done: list[float] = []

            def stream(player: httpx.Client) -> None:
                page = player.get(f"/calls/{CALL}").text
                url = PLAYER.search(page)[1]  # type: ignore[index]
                begin = time.perf_counter()
                with player.stream("GET", url) as answer:
                    size = sum(len(piece) for piece in answer.iter_raw())
                done.append(size / (time.perf_counter() - begin))

            threads = [threading.Thread(target=stream, args=(p,)) for p in players]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            rate = min(done) / 16000  # PCM16 at 8 kHz: 16 000 bytes a second of audio
            print(f"four players streaming 10 min each at once: slowest {rate:.0f}x real time")
        finally:
            server.should_exit = True
    raise SystemExit(0 if recorder_under_load(args.load_seconds) else 1)


if __name__ == "__main__":
    main()
