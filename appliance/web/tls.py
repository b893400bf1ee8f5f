"""The web page's TLS certificate: self-signed, made once in the data folder at first run.

The owner can install their own (`appliance web --cert --key`). The SHA-256 fingerprint
is shown on the status page, so a person can check what the browser's warning shows.
"""

import datetime
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.errors import WebError
from appliance.vault.keys import write_atomic

WEB = "web"
CERT = "cert.pem"
KEY = "key.pem"
VALID_DAYS = 3650


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path
    fingerprint: str  # SHA-256 of the DER certificate, colon-separated hex


def fingerprint(cert_file: Path) -> str:
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except (OSError, ValueError) as exc:
        raise WebError(f"cannot read the certificate {cert_file}: {exc}") from exc
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _names() -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    host = socket.gethostname()
    dns = sorted({host, f"{host}.local", "localhost"})
    ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    try:
        for info in socket.getaddrinfo(host, None):
            ips.add(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
    except (OSError, ValueError):
        pass  # no resolvable address yet: the mDNS name still works
    return dns, sorted(ips, key=str)


def make_self_signed(cert_file: Path, key_file: Path, now: datetime.datetime | None = None) -> None:
    """An ECDSA P-256 certificate for the appliance's host name, its mDNS name and its
    addresses; the key file is 0600 and written before the certificate."""
    start = now or datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    dns, ips = _names()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(a) for a in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - datetime.timedelta(days=1))
        .not_valid_after(start + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_atomic(key_file, key_pem, 0o600)
    write_atomic(cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def ensure_certificate(
    data_dir: str | Path, cert_file: str | Path | None = None, key_file: str | Path | None = None
) -> Certificate:
    """The owner's certificate when given, else the data folder's, made on first use."""
    if (cert_file is None) != (key_file is None):
        raise WebError("give both --cert and --key, or neither", hint="PEM files")
    if cert_file is not None and key_file is not None:
        cert, key = Path(cert_file), Path(key_file)
        if not key.is_file():
            raise WebError(f"no key file at {key}")
        return Certificate(cert, key, fingerprint(cert))
    folder = Path(data_dir) / WEB
    folder.mkdir(mode=0o750, parents=True, exist_ok=True)
    cert, key = folder / CERT, folder / KEY
    if not (cert.exists() and key.exists()):
        make_self_signed(cert, key)
    if os.stat(key).st_mode & 0o077:
        raise WebError(f"the TLS key {key} is readable by others", hint=f"chmod 600 {key}")
    return Certificate(cert, key, fingerprint(cert))
