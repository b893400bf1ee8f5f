"""Short form of campaign 6 (bench/torture/web.py; `make torture` runs it for 30 s with
cold restarts): four browsers stream and a hostile client attacks while the recorder
records a call in real time, and the web process is killed -9 mid-stream."""

import shutil

import pytest

from bench.torture import web


@pytest.mark.skipif(shutil.which("age") is None, reason="Debian `age` not installed")
def test_hostile_clients_and_a_killed_web_process_under_load_lose_nothing() -> None:
    result = web.run(size=1, seed=2, log_n=10, warm=True)
    assert not result.failures, result.report()
    figures = result.figures
    processed, expected = str(figures["frames processed / expected"]).split(" / ")
    assert processed == expected and int(expected) >= 400, result.report()
    assert figures["xruns"] == 0 and figures["5xx"] == 0
    assert int(figures["hostile rounds"]) >= 1, result.report()
    assert int(figures["requests without a session, all refused"]) >= 19
    assert all(float(rate) > 1 for rate in str(figures["streams, x real time"]).split())
