"""`appliance web`: the web page on uvicorn, over HTTPS unless plain HTTP is asked for on
loopback (tests and the demo)."""

import ipaddress
import logging
from pathlib import Path
from typing import TextIO

import uvicorn

from appliance.errors import WebError
from appliance.vault.catalog import Catalog
from appliance.web import setup, tls
from appliance.web.app import MAX_BODY, Web, create_app

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def print_setup_code(data_dir: str | Path, out: TextIO) -> None:
    with Catalog.open(data_dir) as catalog:
        code = setup.make_code(catalog)
    minutes = setup.CODE_SECONDS // 60
    out.write(f"setup code: {code} (valid {minutes} minutes, once; enter it at /setup)\n")
    out.flush()


def serve(
    data_dir: str | Path,
    host: str,
    port: int,
    cert: str | None,
    key: str | None,
    plain_http: bool,
    out: TextIO,
) -> int:
    data = Path(data_dir)
    if plain_http and not is_loopback(host):
        raise WebError(
            f"plain HTTP only on a loopback address, not on {host}",
            hint="drop --plain-http (HTTPS with a self-signed certificate), or --host 127.0.0.1",
        )
    if plain_http and (cert or key):
        raise WebError("--plain-http takes no certificate")
    data.mkdir(parents=True, exist_ok=True)
    with Catalog.open(data) as catalog:
        first_run = not catalog.users()
    certificate = None if plain_http else tls.ensure_certificate(data, cert, key)
    web = Web(data, certificate.fingerprint if certificate else "")
    scheme = "http" if plain_http else "https"
    out.write(f"web page: {scheme}://{host}:{port}/\n")
    if certificate:
        out.write(f"certificate SHA-256: {certificate.fingerprint}\n")
    if first_run:
        print_setup_code(data, out)
    out.flush()
    config = uvicorn.Config(
        create_app(web),
        host=host,
        port=port,
        ssl_certfile=str(certificate.cert_file) if certificate else None,
        ssl_keyfile=str(certificate.key_file) if certificate else None,
        log_level="warning",
        access_log=False,  # URLs carry call ids and search text: no access log
        server_header=False,
        proxy_headers=False,
        limit_concurrency=64,
        timeout_keep_alive=10,
        h11_max_incomplete_event_size=16 * 1024,
        lifespan="off",
    )
    log.info("web page on %s:%d, request bodies up to %d bytes", host, port, MAX_BODY)
    try:
        uvicorn.Server(config).run()
    finally:
        web.gate.close()
    return 0
