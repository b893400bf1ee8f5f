"""`appliance update ...`: arguments and configuration in, the library called, words out."""

import argparse
from pathlib import Path
from typing import TextIO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.config import Config
from appliance.errors import UpdateError
from appliance.update import releases
from appliance.update.bundle import (
    load_private_key,
    load_public_key,
    sign_bundle,
    trusted_keys,
    verify_bundle,
)
from appliance.vault.catalog import Catalog


def _trusted(args: argparse.Namespace) -> list[Ed25519PublicKey]:
    if not args.trusted_key:
        return trusted_keys()
    keys = []
    for path in args.trusted_key:
        try:
            keys.append(load_public_key(Path(path).read_bytes(), path))
        except OSError as exc:
            raise UpdateError(f"cannot read {path}: {exc.strerror}") from exc
    return keys


def _catalog(cfg: Config, args: argparse.Namespace) -> Catalog:
    return Catalog.open(args.data or cfg.storage.data_dir, create=False)


def sign(args: argparse.Namespace, out: TextIO) -> int:
    key = load_private_key(args.key)
    bundle = sign_bundle(args.out, args.wheels, args.version, key, args.min_version, args.package)
    if not any(Path(w).name.startswith("pip-") for w in bundle.wheels):
        out.write("note: no pip wheel in the bundle; the box keeps installing with its pip\n")
    out.write(
        f"{args.out}: {bundle.package} {bundle.version}, {len(bundle.files)} wheels, signed\n"
    )
    return 0


def verify(cfg: Config, args: argparse.Namespace, out: TextIO) -> int:
    root = Path(cfg.update.root)
    installed = releases.release_at(root / releases.CURRENT)
    bundle = verify_bundle(
        args.bundle,
        _trusted(args),
        installed.version if installed else None,
        package=installed.package if installed else None,
    )
    out.write(f"{args.bundle}: {bundle.package} {bundle.version}, signature and files check\n")
    return 0


def apply(cfg: Config, args: argparse.Namespace, out: TextIO) -> int:
    services = releases.SystemdServices(cfg.update.services)
    with _catalog(cfg, args) as catalog:
        done = releases.apply_update(args.bundle, cfg.update, catalog, _trusted(args), services)
    out.write(f"updated from {done.previous} to {done.version}; it runs healthy\n")
    return 0


def rollback(cfg: Config, args: argparse.Namespace, out: TextIO) -> int:
    services = releases.SystemdServices(cfg.update.services)
    with _catalog(cfg, args) as catalog:
        back = releases.rollback(cfg.update, catalog, services, "command line")
    out.write(f"back on {back.version}\n")
    return 0


def settle(cfg: Config, args: argparse.Namespace, out: TextIO) -> int:
    services = releases.SystemdServices(cfg.update.services)
    with _catalog(cfg, args) as catalog:
        state = releases.settle(cfg.update, catalog, services)
    out.write(f"update state: {state}\n")
    return 0


def status(cfg: Config, out: TextIO) -> int:
    root = Path(cfg.update.root)
    current = releases.current_release(root)
    previous = releases.release_at(root / releases.PREVIOUS)
    state = releases.read_state(root)
    out.write(f"current: {current.package} {current.version} ({current.path})\n")
    out.write(f"previous: {previous.version if previous else '-'}\n")
    out.write(f"last update: {state.get('state', 'none')} {state.get('version', '')}\n".rstrip())
    out.write("\n")
    return 0


def apply_requested(cfg: Config, args: argparse.Namespace, out: TextIO) -> int:
    from appliance.update import inbox

    services = releases.SystemdServices(cfg.update.services)
    data = Path(args.data or cfg.storage.data_dir)
    with _catalog(cfg, args) as catalog:
        outcome = inbox.apply_requested(data, cfg.update, catalog, _trusted(args), services)
    if outcome is None:
        out.write("no update is requested\n")
        return 0
    if not outcome.ok:
        raise UpdateError(
            f"update request {outcome.request_id} ({outcome.bundle}): {outcome.message}"
        )
    out.write(f"update request {outcome.request_id}: {outcome.message}\n")
    return 0


def fetch(cfg: Config, args: argparse.Namespace, out: TextIO) -> int:
    from appliance.update import fetch as fetching

    data = Path(args.data or cfg.storage.data_dir)
    with _catalog(cfg, args) as catalog:
        done = fetching.fetch(data, cfg.update, catalog, _trusted(args))
    out.write(f"{done.message}\n")
    return 0
