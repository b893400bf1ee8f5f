"""`update fetch`: the newest bundle from a folder (a USB stick) or an https source, into
the updates folder, verified and queued; then applied by root's `apply-requested`.

The https source is a real `http.server` with TLS on 127.0.0.1, its certificate issued by a
CA made here and handed to the fetch as `update.source_ca`.
"""

import datetime
import hashlib
import http.server
import ipaddress
import json
import os
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from appliance.cli import main
from appliance.errors import UpdateError
from appliance.update import fetch, inbox
from appliance.update.bundle import public_pem
from tests.update.conftest import snapshot


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 issued by it: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("test update CA"))
        .issuer_name(_name("test update CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def https_source(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """(url, served folder, CA file) of a TLS server on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    ca, cert, key = make_tls(tmp_path)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Quiet, directory=str(served))
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/releases/", served, ca
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def publish(served: Path, bundle: Path, **latest: str) -> str:
    (served / "releases").mkdir(exist_ok=True)
    data = bundle.read_bytes()
    (served / "releases" / "canary-2.0.0.bundle").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    body = {"bundle": "canary-2.0.0.bundle", "sha256": digest} | latest
    (served / "releases" / "latest.json").write_text(json.dumps(body))
    return digest


def test_the_newest_bundle_of_a_usb_stick_is_queued_once(box, make_bundle, tmp_path) -> None:
    root, cfg, catalog, trusted = box
    data = root.parent / "data"
    stick = tmp_path / "stick"
    stick.mkdir()
    for version in ("1.5.0", "2.0.0", "0.9.0"):
        (stick / f"v{version}.bundle").write_bytes(make_bundle(version).read_bytes())
    (stick / "junk.bundle").write_bytes(b"not a tar at all" * 100)
    source = replace(cfg, source=str(stick))
    done = fetch.fetch(data, source, catalog, trusted)
    assert done.state == "queued" and "canary-2.0.0.bundle" in done.message, done
    assert [w.version for w in inbox.waiting(data)] == ["2.0.0"]
    [request] = inbox.requests(catalog)
    assert request["id"] == done.request_id and request["by"] == "update fetch"
    assert (
        request["payload"]["sha256"]
        == hashlib.sha256((stick / "v2.0.0.bundle").read_bytes()).hexdigest()
    )
    assert (data / "updates" / inbox.FLAG).exists()
    again = fetch.fetch(data, source, catalog, trusted)
    assert again.state == "known" and len(inbox.requests(catalog)) == 1
    assert not list((data / "updates").glob(".incoming-*"))

    (stick / "v2.0.0.bundle").unlink()
    (stick / "v1.5.0.bundle").unlink()
    older = fetch.fetch(data, source, catalog, trusted)
    assert older.state == "up-to-date" and "0.9.0" in older.message
    absent = fetch.fetch(data, replace(cfg, source=str(tmp_path / "no-stick")), catalog, trusted)
    assert absent.state == "up-to-date" and "no USB stick mounted" in absent.message
    assert len(inbox.requests(catalog)) == 1


def test_a_wrongly_signed_bundle_on_a_stick_is_refused(box, make_bundle, tmp_path) -> None:
    root, cfg, catalog, trusted = box
    data = root.parent / "data"
    stick = tmp_path / "stick"
    stick.mkdir()
    stranger = make_bundle("2.0.0", key=Ed25519PrivateKey.generate())
    (stick / "x.bundle").write_bytes(stranger.read_bytes())
    with pytest.raises(UpdateError, match="not from the maintainers"):
        fetch.fetch(data, replace(cfg, source=str(stick)), catalog, trusted)
    assert os.listdir(data / "updates") == [] and inbox.requests(catalog) == []
    assert [e.target for e in catalog.audit_entries() if e.action == "update.refused"] == [
        str(stick)
    ]


def test_an_https_source_is_fetched_verified_and_applied(
    box, make_bundle, https_source, services
) -> None:
    root, cfg, catalog, trusted = box
    data = root.parent / "data"
    url, served, ca = https_source
    digest = publish(served, make_bundle("2.0.0"))
    source = replace(cfg, source=url, source_ca=str(ca))
    done = fetch.fetch(data, source, catalog, trusted)
    assert done.state == "queued", done
    assert inbox.requests(catalog)[0]["payload"]["sha256"] == digest
    applied = inbox.apply_requested(data, cfg, catalog, trusted, services, poll_s=0.1)
    assert applied is not None and applied.ok, applied
    assert services.running_version() == "2.0.0"
    # applied now: the source's latest is what runs
    assert fetch.fetch(data, source, catalog, trusted).state in ("up-to-date", "known")
    publish(served, make_bundle("2.0.0"), version="2.0.0")
    assert fetch.fetch(data, source, catalog, trusted).state == "up-to-date"


def test_https_refusals_leave_nothing(box, make_bundle, https_source, monkeypatch) -> None:
    root, cfg, catalog, trusted = box
    data = root.parent / "data"
    url, served, ca = https_source
    before = snapshot(root)
    publish(served, make_bundle("2.0.0"))
    # the certificate is checked: the system's CAs do not know this server
    with pytest.raises(UpdateError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch.fetch(data, replace(cfg, source=url), catalog, trusted)
    source = replace(cfg, source=url, source_ca=str(ca))
    # latest.json's SHA-256 must match what is downloaded
    (served / "releases" / "latest.json").write_text(
        json.dumps({"bundle": "canary-2.0.0.bundle", "sha256": "0" * 64})
    )
    with pytest.raises(UpdateError, match="does not have the SHA-256"):
        fetch.fetch(data, source, catalog, trusted)
    # a name that leaves the folder
    (served / "releases" / "latest.json").write_text(
        json.dumps({"bundle": "../../etc/passwd.bundle", "sha256": "0" * 64})
    )
    with pytest.raises(UpdateError, match="not a bundle file name"):
        fetch.fetch(data, source, catalog, trusted)
    # larger than the cap
    publish(served, make_bundle("2.0.0"))
    monkeypatch.setattr(inbox, "MAX_BUNDLE", 1000)
    with pytest.raises(UpdateError, match="larger than"):
        fetch.fetch(data, source, catalog, trusted)
    monkeypatch.undo()
    (served / "releases" / "latest.json").unlink()
    with pytest.raises(UpdateError, match="answers 404"):
        fetch.fetch(data, source, catalog, trusted)
    with pytest.raises(UpdateError, match="only a folder or an https"):
        fetch.fetch(data, replace(cfg, source=url.replace("https", "http")), catalog, trusted)
    assert os.listdir(data / "updates") == [] and inbox.requests(catalog) == []
    assert snapshot(root) == before


def test_cli_fetch(box, make_bundle, signing_key, tmp_path, capsys) -> None:
    root, _, catalog, _ = box
    data = root.parent / "data"
    pem = tmp_path / "maintainers.pem"
    pem.write_bytes(public_pem(signing_key))
    args = ["update", "fetch", "--data", str(data), "--trusted-key", str(pem)]
    args += ["-o", f"update.root={root}"]
    assert main(args) == 1
    assert "appliance: error: no update source is configured" in capsys.readouterr().err
    stick = tmp_path / "stick"
    stick.mkdir()
    (stick / "a.bundle").write_bytes(make_bundle("2.0.0").read_bytes())
    assert main([*args, "-o", f"update.source={stick}"]) == 0
    assert "canary-2.0.0.bundle fetched and verified" in capsys.readouterr().out
    assert len(inbox.requests(catalog)) == 1
