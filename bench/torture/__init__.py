"""Torture campaigns (issue 10): long and random runs that show, with numbers from checks
that can fail, that the appliance keeps working and loses nothing.

One module per campaign; each has `run(size, seed) -> Result` and prints its figures when
run alone (`.venv/bin/python -m bench.torture.power_loss`). `make torture` runs them all at
full size (`bench/torture/run_all.py`); `tests/torture/` runs a short form of each in
`make test`.
"""
