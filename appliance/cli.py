"""The `appliance` command: parses arguments and calls the library, nothing more.

Errors print as `appliance: error: ...` and `appliance: hint: ...` on stderr; exit 1 for
errors, 2 for usage. The subcommands are a contract (shared/DESIGN.md): scripts and
checks depend on them, and the README lists them.
"""

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appliance import __version__, config
from appliance.errors import ApplianceError

log = logging.getLogger("appliance")
DATA_ARGS = ("--data",)
DATA_OPTIONS: dict[str, Any] = {"metavar": "DIR", "required": True, "help": "the data folder"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance", description="An ethical call recorder for an analog phone line."
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(
        name: str, text: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    def on_data(
        group: Any, name: str, text: str, handler: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        """A subcommand that works on a data folder (`--data DIR`, required)."""
        sub: argparse.ArgumentParser = group.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        sub.add_argument(*DATA_ARGS, **DATA_OPTIONS)
        return sub

    def add_authority(sub: argparse.ArgumentParser) -> None:
        who = sub.add_mutually_exclusive_group(required=True)
        who.add_argument("--identity", metavar="FILE", help="the owner's recovery identity")
        who.add_argument("--by", metavar="ADMIN", help="an admin; passphrase on stdin")
        sub.add_argument(
            "--password-stdin",
            action="store_true",
            help="read passphrases from stdin, one a line (the new user's first)",
        )

    def add_key_source(sub: argparse.ArgumentParser, required: bool = False) -> None:
        keys = sub.add_mutually_exclusive_group(required=required)
        keys.add_argument("--identity", metavar="FILE", help="an age identity file")
        keys.add_argument("--user", metavar="NAME", help="a user whose passphrase is on stdin")
        sub.add_argument("--password-stdin", action="store_true", help="with --user")

    def add_config_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            help="config file (default /etc/appliance/appliance.toml)",
        )
        sub.add_argument(
            "-o",
            dest="overrides",
            metavar="SECTION.KEY=VALUE",
            action="append",
            default=[],
            help="override one setting; may be repeated",
        )

    run = add("run", "run the recorder on the board", cmd_run)
    add_config_options(run)

    demo = add("demo", "a simulated line, the recorder and the web page, ready to click", cmd_demo)
    demo.add_argument("--data", metavar="DIR", default="demo-data", help="data folder")
    demo.add_argument("--port", type=int, default=8080, help="web page port on 127.0.0.1")
    demo.add_argument(
        "--realtime", action="store_true", help="play the first round of calls at the speed of life"
    )
    demo.add_argument(
        "--once", action="store_true", help="play the calls once and exit, without the web page"
    )

    web = add("web", "the web page: find, play and govern recordings (HTTPS)", cmd_web)
    web.add_argument(
        "--data", metavar="DIR", help="the data folder (default: storage.data_dir of the config)"
    )
    web.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    web.add_argument("--port", type=int, default=8443, help="port (default 8443)")
    web.add_argument("--cert", metavar="FILE", help="the owner's own certificate (PEM)")
    web.add_argument("--key", metavar="FILE", help="its private key (PEM)")
    web.add_argument(
        "--plain-http", action="store_true", help="no TLS: tests and the demo, on loopback only"
    )
    web.add_argument(
        "--setup-code",
        action="store_true",
        help="print a one-time first-run setup code and exit",
    )
    add_config_options(web)

    simulate = add("simulate", "run scenario files through the simulated board", cmd_simulate)
    simulate.add_argument("scenarios", metavar="SCENARIO", nargs="+", help="scenario files")
    simulate.add_argument(
        "--data", metavar="DIR", help="data folder (default: a temporary one, with new keys)"
    )
    simulate.add_argument(
        "--json", action="store_true", help="print the call records as a JSON array"
    )
    simulate.add_argument("--events", action="store_true", help="print line events as JSON lines")
    simulate.add_argument("--realtime", action="store_true", help="pace the line in real time")
    add_config_options(simulate)

    show = add("config", "print the effective configuration, secrets masked", cmd_config)
    add_config_options(show)

    dtmf = add("dtmf", "the keypad digits in a WAV file: DIGIT ONSET_SECONDS a line", cmd_dtmf)
    dtmf.add_argument("wav", metavar="FILE.wav", help="PCM16 or µ-law WAV, any rate")

    callerid = add("callerid", "the caller-ID messages in a WAV file", cmd_callerid)
    callerid.add_argument("wav", metavar="FILE.wav", help="PCM or µ-law WAV, any rate")
    callerid.add_argument("--json", action="store_true", help="print a JSON array")
    callerid.add_argument(
        "--standard",
        dest="standards",
        action="append",
        choices=("bell202", "v23", "dtmf"),
        help="look only for this standard; may be repeated (default: all three)",
    )

    calls = add("calls", "the call records of the catalog", lambda a: 2)
    calls_commands = calls.add_subparsers(dest="calls_command", metavar="COMMAND", required=True)
    listing = on_data(calls_commands, "list", "list calls, newest first", cmd_calls_list)
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    add_key_source(listing)

    export = add("export", "decrypt one call's recording to a WAV file", cmd_export)
    export.add_argument("call_id", metavar="CALL_ID")
    export.add_argument("--out", metavar="FILE.wav", required=True, help="where to write it")
    export.add_argument(*DATA_ARGS, **DATA_OPTIONS)
    add_key_source(export, required=True)

    keys = add("keys", "the appliance's keys", lambda a: 2)
    keys_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    init = on_data(
        keys_commands,
        "init",
        "make the device keys; print the recovery identity once",
        cmd_keys_init,
    )
    init_source = init.add_mutually_exclusive_group()
    init_source.add_argument(
        "--recovery-recipient", metavar="AGE1...", help="the owner's own age public key"
    )
    init_source.add_argument(
        "--from-request",
        action="store_true",
        help="answer the web page's first-run request in DIR/setup (appliance-setup.service)",
    )
    rotate = on_data(
        keys_commands, "rotate", "new recordings go to a new device key", cmd_keys_rotate
    )
    who = rotate.add_mutually_exclusive_group(required=True)
    who.add_argument("--identity", metavar="FILE", help="the owner's recovery identity")
    who.add_argument("--by", metavar="ADMIN", help="an admin; passphrase on stdin")
    who.add_argument(
        "--from-request",
        action="store_true",
        help="answer the web page's rotation request in DIR/setup (appliance-rotate.service)",
    )
    rotate.add_argument(
        "--password-stdin", action="store_true", help="read the admin's passphrase from stdin"
    )

    users = add("users", "who may log in, with which role", lambda a: 2)
    users_commands = users.add_subparsers(dest="users_command", metavar="COMMAND", required=True)
    user_add = on_data(users_commands, "add", "add a user (passphrase on stdin)", cmd_users_add)
    user_add.add_argument("name")
    user_add.add_argument("--role", choices=("admin", "listener", "auditor"), required=True)
    add_authority(user_add)
    user_remove = on_data(users_commands, "remove", "remove a user", cmd_users_remove)
    user_remove.add_argument("name")
    add_authority(user_remove)
    passwd = on_data(
        users_commands, "passwd", "change a passphrase (old, new on stdin)", cmd_users_passwd
    )
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", required=True)

    audit = add("audit", "the hash-chained audit log", lambda a: 2)
    audit_commands = audit.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = on_data(
        audit_commands, "verify", "check the audit chain; print its head", cmd_audit_verify
    )
    verify.add_argument("--head", metavar="SEQ:HASH", help="a head kept outside the catalog")
    clock = add("clock", "the system clock, set from an admin's browser", lambda a: 2)
    clock_commands = clock.add_subparsers(dest="clock_command", metavar="COMMAND", required=True)
    on_data(
        clock_commands,
        "apply-requested",
        "set the clock to the newest browser time asked for (appliance-clock.service)",
        cmd_clock_apply_requested,
    )
    _add_backup(add, add_config_options, add_key_source)
    _add_update(add, add_config_options)
    return parser


def _add_backup(add: Any, add_config_options: Any, add_key_source: Any) -> None:
    backup = add("backup", "off-box copies of the sealed recordings, keys and catalog", lambda a: 2)
    backup_commands = backup.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)

    def sub(name: str, text: str, handler: Callable[[argparse.Namespace], int]) -> Any:
        parser = backup_commands.add_parser(name, help=text, description=text)
        parser.set_defaults(handler=handler)
        parser.add_argument("--target", metavar="URL", help="instead of backup.target")
        add_config_options(parser)
        return parser

    run = sub("run", "copy what is new to the target now", cmd_backup_run)
    run.add_argument("--data", metavar="DIR", help="instead of storage.data_dir")
    run.add_argument("--box", metavar="ID", help="instead of backup.box_id")
    check = sub("verify", "read a box's copy back and check every hash", cmd_backup_verify)
    check.add_argument("--box", metavar="ID", help="instead of backup.box_id")
    listing = sub("list", "the calls of every box in the copy", cmd_backup_list)
    listing.add_argument("--identity", metavar="FILE", required=True, help="the recovery identity")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    export = sub("export", "one call's recording from the copy, as WAV", cmd_backup_export)
    export.add_argument("box", metavar="BOX")
    export.add_argument("call_id", metavar="CALL_ID")
    export.add_argument("--out", metavar="FILE.wav", required=True, help="where to write it")
    export.add_argument("--identity", metavar="FILE", required=True, help="the recovery identity")
    restore = sub("restore", "a new box's data folder from a copy", cmd_backup_restore)
    restore.add_argument("--data", metavar="DIR", required=True, help="an empty data folder")
    restore.add_argument("--box", metavar="ID", required=True, help="the box to restore")
    add_key_source(restore, required=True)


def _add_update(add: Any, add_config_options: Any) -> None:
    update = add("update", "signed updates, with rollback", lambda a: 2)
    update_commands = update.add_subparsers(dest="update_command", metavar="COMMAND", required=True)

    def sub(name: str, text: str, handler: Callable[[argparse.Namespace], int]) -> Any:
        parser = update_commands.add_parser(name, help=text, description=text)
        parser.set_defaults(handler=handler)
        return parser

    def on_box(parser: Any) -> None:
        add_config_options(parser)
        parser.add_argument("--data", metavar="DIR", help="instead of storage.data_dir")

    def trust(parser: Any) -> None:
        parser.add_argument(
            "--trusted-key",
            metavar="FILE.pem",
            action="append",
            default=[],
            help="trust this public key instead of the shipped ones (a maintainer's bench)",
        )

    sign = sub("sign", "make a signed bundle of wheels (maintainers)", cmd_update_sign)
    sign.add_argument("wheels", metavar="WHEEL", nargs="+", help="the package and its deps")
    sign.add_argument("--key", metavar="KEY.pem", required=True, help="the Ed25519 signing key")
    sign.add_argument("--version", required=True, help="the release's version")
    sign.add_argument("--min-version", default="0.0.0", help="oldest version it updates")
    sign.add_argument("--package", default="appliance", help="the package to install")
    sign.add_argument("--out", metavar="BUNDLE", required=True, help="the bundle to write")
    check = sub("verify", "check a bundle's signature, files and version", cmd_update_verify)
    check.add_argument("bundle", metavar="BUNDLE")
    add_config_options(check)
    trust(check)
    apply = sub("apply", "install a bundle; roll back if unhealthy", cmd_update_apply)
    apply.add_argument("bundle", metavar="BUNDLE")
    on_box(apply)
    trust(apply)
    requested = sub(
        "apply-requested",
        "apply the oldest update the web page or a fetch queued (appliance-update.service)",
        cmd_update_apply_requested,
    )
    on_box(requested)
    trust(requested)
    fetch = sub(
        "fetch", "the newest bundle from update.source, verified and queued", cmd_update_fetch
    )
    on_box(fetch)
    trust(fetch)
    on_box(sub("rollback", "go back to the previous release", cmd_update_rollback))
    on_box(sub("settle", "at boot: finish an update left in its trial", cmd_update_settle))
    add_config_options(sub("status", "the installed releases", cmd_update_status))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except ApplianceError as exc:
        print(f"appliance: error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"appliance: hint: {exc.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _load_config(args: argparse.Namespace) -> config.Config:
    return config.load(getattr(args, "config", None), getattr(args, "overrides", []))


def cmd_config(args: argparse.Namespace) -> int:
    print(config.to_toml(_load_config(args)), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.recorder import run

    return run(_load_config(args))


def cmd_web(args: argparse.Namespace) -> int:
    from appliance.web import server

    data = args.data or _load_config(args).storage.data_dir
    if args.setup_code:
        server.print_setup_code(data, sys.stdout)
        return 0
    return server.serve(
        data, args.host, args.port, args.cert, args.key, args.plain_http, sys.stdout
    )


def cmd_dtmf(args: argparse.Namespace) -> int:
    from appliance.dsp.dtmf import decode, format_digits
    from appliance.dsp.wav import read_line_audio

    for line in format_digits(decode(read_line_audio(args.wav))):
        print(line)
    return 0


def cmd_callerid(args: argparse.Namespace) -> int:
    from appliance.dsp.callerid import STANDARDS, decode, format_message
    from appliance.dsp.wav import read_line_audio

    messages = decode(read_line_audio(args.wav), standards=args.standards or STANDARDS)
    if args.json:
        print(json.dumps([m.to_json() for m in messages], indent=1))
        return 0
    for message in messages:
        print(format_message(message))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from appliance.vault.calls import export_call

    identities = _identities(args, "recordings")
    actor = args.user or "recovery identity"
    written = export_call(args.data, args.call_id, args.out, identities, actor)
    print(f"{args.out}: {written} bytes, PCM16 WAV 8 kHz mono")
    return 0


def cmd_keys_init(args: argparse.Namespace) -> int:
    from appliance.vault import keys_cli

    if args.from_request:
        return keys_cli.keys_from_request(args.data, sys.stdout)
    return keys_cli.keys_init(args.data, args.recovery_recipient, sys.stdout, sys.stderr)


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    from appliance.vault import keys_cli

    if args.from_request:
        return keys_cli.keys_rotate_from_request(args.data, sys.stdout)
    return keys_cli.keys_rotate(args.data, sys.stdin, sys.stdout, args.identity, args.by)


def cmd_clock_apply_requested(args: argparse.Namespace) -> int:
    from appliance import clockset

    return clockset.apply_command(args.data, sys.stdout)


def cmd_users_add(args: argparse.Namespace) -> int:
    from appliance.vault import keys_cli

    _need_stdin(args)
    return keys_cli.users_add(
        args.data, args.name, args.role, sys.stdin, sys.stdout, args.identity, args.by
    )


def cmd_users_remove(args: argparse.Namespace) -> int:
    from appliance.vault import keys_cli

    return keys_cli.users_remove(
        args.data, args.name, sys.stdin, sys.stdout, args.identity, args.by
    )


def cmd_users_passwd(args: argparse.Namespace) -> int:
    from appliance.vault import keys_cli

    return keys_cli.users_passwd(args.data, args.name, sys.stdin, sys.stdout)


def _need_stdin(args: argparse.Namespace) -> None:
    if not args.password_stdin:
        raise ApplianceError(
            "passphrases come from stdin only", hint="add --password-stdin and pipe them in"
        )


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from appliance.vault.catalog import Catalog

    expected = None
    if args.head:
        seq, _, digest = args.head.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise ApplianceError(
                f"--head {args.head!r} is not SEQ:HASH", hint="as printed by verify"
            )
        expected = (int(seq), digest)
    with Catalog.open(args.data, create=False) as catalog:
        seq, digest = catalog.verify_audit(expected)
    print(f"audit log: {seq} entries, the chain holds")
    print(f"head: {seq}:{digest}")
    print("keep the head outside the appliance: a later verify --head shows a rewritten tail")
    return 0


def cmd_calls_list(args: argparse.Namespace) -> int:
    from appliance.vault.calls import list_calls

    rows = list_calls(args.data, _identities(args, "caller data"))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        caller = " ".join(str(row[k]) for k in ("caller_number", "caller_name") if row.get(k))
        shown = caller or ("(sealed)" if row["sealed"] else "")
        print(
            f"{row['id']}  {row['started']}  {row['direction'] or '-':8}  "
            f"{row['consent'] or '-':9}  {row['audio_seconds'] or 0:7.1f} s  {row['status']:11}  "
            f"{shown}"
        )
    return 0


def _identities(args: argparse.Namespace, why: str) -> list[Any]:
    """Private keys into this process's memory: from --identity, or --user's key slot
    (audited). None given: an empty list."""
    from appliance.vault import age, keys
    from appliance.vault.catalog import Catalog

    if getattr(args, "user", None):
        _need_stdin(args)
        unlocked = keys.unlock_with_passphrase(
            args.data, args.user, sys.stdin.readline().rstrip("\n")
        )
        with Catalog.open(args.data, create=False) as catalog:
            catalog.audit(args.user, "unlock", why, {"via": "command line"})
        if not unlocked.has_keys:
            raise ApplianceError(f"{args.user} ({unlocked.role}) holds no key to open {why}")
        return list(unlocked.device)
    if not getattr(args, "identity", None):
        return []
    try:
        text = Path(args.identity).read_text()
    except OSError as exc:
        raise ApplianceError(f"cannot read the identity file: {exc}") from exc
    return list(age.parse_identities(text))


def cmd_simulate(args: argparse.Namespace) -> int:
    from appliance.recorder.recorder import describe
    from appliance.scenario.simulate import simulate_file

    cfg = _load_config(args)

    def print_event(t: float, item: Any) -> None:
        line = describe(t, item)
        if line is not None:
            print(json.dumps(line), flush=True)

    failed, records = 0, list[dict[str, Any]]()
    for path in args.scenarios:
        result = simulate_file(
            path, cfg, args.realtime, print_event if args.events else None, args.data
        )
        for failure in result.failures:
            print(f"appliance: error: {failure}", file=sys.stderr)
        failed += bool(result.failures)
        records += result.calls
        if not args.events and not args.json:
            verdict = f"{len(result.failures)} expectation(s) failed" if result.failures else "ok"
            line = f"{result.duration:.1f} s of line, {len(result.calls)} calls"
            print(f"{path}: {line}, {verdict}")
    if args.json:
        print(json.dumps(records, indent=1))
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from appliance.web import demo, server

    cfg = config.load(overrides=["board.kind=sim"])
    data = Path(args.data)
    login = demo.prepare(data)
    print("A simulated phone line, played through the appliance's real code: board, line,")
    print(f"DSP, call control and the vault (data folder: {data}).\n")
    played = demo.play_once(data, cfg, args.realtime, _print_readable, sys.stdout)
    if args.once:
        return 1 if any(result.failures for result in played) else 0
    line = demo.LiveLine(data, cfg).start()
    print(f"Log in as {login.user}, passphrase {login.passphrase}")
    print("The same calls ring again in real time (see Status); Ctrl-C stops the demo.")
    try:
        return server.serve(data, demo.HOST, args.port, None, None, True, sys.stdout)
    finally:
        line.stop()


def _print_readable(t: float, item: Any) -> None:
    from appliance.recorder.recorder import describe

    line = describe(t, item)
    if line is None or line.get("action") == "SetLed":
        return
    name = line.pop("event", None) or line.pop("action")
    when = line.pop("t")
    details = ", ".join(f"{k} {v}" for k, v in line.items())
    print(f"   {when:8.3f} s  {name}" + (f" ({details})" if details else ""), flush=True)


def cmd_backup_run(args: argparse.Namespace) -> int:
    from appliance.backup import commands

    return commands.run(_load_config(args), args, sys.stdout)


def cmd_backup_verify(args: argparse.Namespace) -> int:
    from appliance.backup import commands

    return commands.verify(_load_config(args), args, sys.stdout)


def cmd_backup_list(args: argparse.Namespace) -> int:
    from appliance.backup import commands

    return commands.listing(_load_config(args), args, _identities(args, "copies"), sys.stdout)


def cmd_backup_export(args: argparse.Namespace) -> int:
    from appliance.backup import commands

    return commands.export(_load_config(args), args, _identities(args, "copies"), sys.stdout)


def cmd_backup_restore(args: argparse.Namespace) -> int:
    from appliance.backup import commands

    passphrase = None
    if args.user:
        _need_stdin(args)
        passphrase = sys.stdin.readline().rstrip("\n")
    identities = _identities(args, "copies") if args.identity else []
    return commands.restore(_load_config(args), args, identities, passphrase, sys.stdout)


def cmd_update_sign(args: argparse.Namespace) -> int:
    from appliance.update import commands

    return commands.sign(args, sys.stdout)


def cmd_update_verify(args: argparse.Namespace) -> int:
    from appliance.update import commands

    return commands.verify(_load_config(args), args, sys.stdout)


def cmd_update_apply(args: argparse.Namespace) -> int:
    from appliance.update import commands

    return commands.apply(_load_config(args), args, sys.stdout)


def cmd_update_apply_requested(args: argparse.Namespace) -> int:
    from appliance.update import commands

    return commands.apply_requested(_load_config(args), args, sys.stdout)


def cmd_update_fetch(args: argparse.Namespace) -> int:
    from appliance.update import commands

    return commands.fetch(_load_config(args), args, sys.stdout)


def cmd_update_rollback(args: argparse.Namespace) -> int:
    from appliance.update import commands

    return commands.rollback(_load_config(args), args, sys.stdout)


def cmd_update_settle(args: argparse.Namespace) -> int:
    from appliance.update import commands

    return commands.settle(_load_config(args), args, sys.stdout)


def cmd_update_status(args: argparse.Namespace) -> int:
    from appliance.update import commands

    return commands.status(_load_config(args), sys.stdout)
