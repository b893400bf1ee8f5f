"""The age scrypt recipient (passphrase files): our slots against pyrage as the oracle."""

import time

import pyrage
import pytest

from appliance.vault import age
from appliance.vault.age import AgeError, Identity

FAST = 10


@pytest.mark.parametrize("size", [0, 1, age.CHUNK, age.CHUNK + 1, 3 * age.CHUNK])
def test_round_trip(size: int) -> None:
    plain = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    sealed = age.encrypt_with_passphrase(plain, "a long passphrase", FAST)
    assert sealed.startswith(b"age-encryption.org/v1\n-> scrypt ")
    assert age.decrypt_with_passphrase(sealed, "a long passphrase") == plain


def test_ours_opens_with_pyrage() -> None:
    sealed = age.encrypt_with_passphrase(b"key slot " * 10_000, "pässphrase with ümlauts", FAST)
    assert pyrage.passphrase.decrypt(sealed, "pässphrase with ümlauts") == b"key slot " * 10_000


def test_pyrage_opens_with_ours() -> None:
    sealed = pyrage.passphrase.encrypt(b"from rage " * 10_000, "correct horse battery")
    assert age.decrypt_with_passphrase(sealed, "correct horse battery") == b"from rage " * 10_000


def test_wrong_passphrase() -> None:
    sealed = age.encrypt_with_passphrase(b"secret", "right one", FAST)
    with pytest.raises(AgeError, match=r"^wrong passphrase$") as caught:
        age.decrypt_with_passphrase(sealed, "wrong one")
    assert caught.value.hint


def test_work_factor_above_the_limit_is_refused_before_any_work() -> None:
    sealed = age.encrypt_with_passphrase(b"x", "pw", 12)
    with pytest.raises(AgeError, match="work factor 12 is above the limit 11"):
        age.decrypt_with_passphrase(sealed, "pw", max_log_n=11)
    assert age.decrypt_with_passphrase(sealed, "pw", max_log_n=12) == b"x"


@pytest.mark.parametrize("log_n", [0, 31])
def test_work_factor_out_of_range(log_n: int) -> None:
    with pytest.raises(AgeError, match="out of range"):
        age.encrypt_with_passphrase(b"x", "pw", log_n)


def test_empty_passphrase_is_refused() -> None:
    with pytest.raises(AgeError, match="empty passphrase"):
        age.encrypt_with_passphrase(b"x", "", FAST)


def _with_stanza_line(sealed: bytes, old: bytes, new: bytes) -> bytes:
    assert old in sealed
    return sealed.replace(old, new, 1)


def test_scrypt_must_be_the_only_stanza() -> None:
    sealed = age.encrypt_with_passphrase(b"x", "pw", FAST)
    other = age.encrypt(b"y", [Identity.generate().recipient])
    x25519 = other[len(age.VERSION_LINE) + 1 : other.index(b"---")]
    mixed = _with_stanza_line(sealed, b"---", x25519 + b"---")
    with pytest.raises(AgeError, match="only stanza"):
        age.decrypt_with_passphrase(mixed, "pw")


@pytest.mark.parametrize("work", [b"010", b"x", b"100"])
def test_malformed_work_factor(work: bytes) -> None:
    sealed = age.encrypt_with_passphrase(b"x", "pw", FAST)
    bad = _with_stanza_line(sealed, b" 10\n", b" " + work + b"\n")
    with pytest.raises(AgeError, match="work factor"):
        age.decrypt_with_passphrase(bad, "pw")


def test_tampered_header_and_payload() -> None:
    sealed = age.encrypt_with_passphrase(b"payload", "pw", FAST)
    cut = sealed.index(b"--- ") + 4
    mac = bytearray(sealed)
    mac[cut] = ord("A") if sealed[cut] != ord("A") else ord("B")
    with pytest.raises(AgeError, match=r"MAC|base64"):
        age.decrypt_with_passphrase(bytes(mac), "pw")
    body = bytearray(sealed)
    body[-1] ^= 1
    with pytest.raises(AgeError, match="damaged or tampered"):
        age.decrypt_with_passphrase(bytes(body), "pw")


def test_x25519_file_is_not_a_passphrase_file_and_vice_versa() -> None:
    identity = Identity.generate()
    with pytest.raises(AgeError, match="not sealed to a passphrase"):
        age.decrypt_with_passphrase(age.encrypt(b"x", [identity.recipient]), "pw")
    with pytest.raises(AgeError, match="none of the given keys"):
        age.decrypt(age.encrypt_with_passphrase(b"x", "pw", FAST), [identity])


def test_production_work_factor_time() -> None:
    start = time.perf_counter()
    sealed = age.encrypt_with_passphrase(b"x", "a production passphrase", 17)
    made = time.perf_counter() - start
    start = time.perf_counter()
    assert age.decrypt_with_passphrase(sealed, "a production passphrase") == b"x"
    opened = time.perf_counter() - start
    print(f"scrypt logN 17: seal {made:.2f} s, open {opened:.2f} s")
    assert opened < 10
