"""The readers of outside files under hypothesis: only the project's own errors come out
(`make torture` fuzzes the same targets with atheris: bench/torture/files.py)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from bench.torture.files import TARGETS, only_own_errors

RIFF = st.builds(
    lambda body, fmt: b"RIFF" + len(body).to_bytes(4, "little") + b"WAVEfmt " + fmt + body,
    st.binary(max_size=200),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), RIFF))
def test_wav_reader(data: bytes) -> None:
    only_own_errors(TARGETS["wav"], data)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=200).map(str.encode)))
def test_age_reader(data: bytes) -> None:
    only_own_errors(TARGETS["age"], b"age-encryption.org/v1\n" + data)
    only_own_errors(TARGETS["age"], data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_scenario_parser(text: str) -> None:
    only_own_errors(TARGETS["scenario"], text.encode())


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=120))
def test_callerid_parsers(data: bytes) -> None:
    only_own_errors(TARGETS["callerid"], data)
