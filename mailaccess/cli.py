"""The `mailaccess` command line: serve, user, import, export, reindex, dns, check,
backup.

Every command takes --data-dir and --config so several instances can run
side by side and scripts can drive them.  Errors say what to do and exit
non-zero; nothing prints a traceback for a user mistake.

Only two commands may create a store, and only in an empty or absent data
directory, saying so: `serve` on its first start and `user add` (the first
step of a new installation).  Every other command exits non-zero when there
is no store, and a store that is there but damaged is refused by all of them.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys

from . import __version__
from .config import ConfigError, load


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config file (default: built-in "
                   "embedded settings)")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default: the config's "
                   "data_dir, or ./mailaccess-data)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mailaccess",
        description="One mail store served over IMAP, JMAP and Exchange ActiveSync "
        "(email), with LMTP delivery.")
    p.add_argument("--version", action="version", version=f"mailaccess {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("serve", help="run the server (every service, on every core)",
                       description="Run every configured service until SIGINT/SIGTERM. "
                       "With no config: loopback listeners (IMAP 1143, IMAPS 1993, HTTP for JMAP and ActiveSync "
                       "8080, LMTP 2424), data in ./mailaccess-data, a demo account.")
    _common(s)
    s.add_argument("--no-demo", action="store_true", help="do not create the demo account")

    u = sub.add_parser("user", help="manage accounts", description="Manage accounts.")
    usub = u.add_subparsers(dest="user_command", metavar="ACTION")
    usub.required = True
    ua = usub.add_parser("add", help="create an account", description="Create an account "
                         "with the default mailboxes (INBOX, Drafts, Sent, Trash, Junk, Archive).")
    ua.add_argument("name")
    ua.add_argument("--password-stdin", action="store_true",
                    help="read the password from standard input (for scripts)")
    ua.add_argument("--quota", type=int, default=0, metavar="BYTES",
                    help="quota in bytes (0 = the configured default)")
    _common(ua)
    up = usub.add_parser("passwd", help="set an account's password",
                         description="Set an account's password.")
    up.add_argument("name")
    up.add_argument("--password-stdin", action="store_true",
                    help="read the password from standard input")
    _common(up)
    ud = usub.add_parser("delete", help="delete an account and all its mail",
                         description="Delete an account and all its mail.")
    ud.add_argument("name")
    ud.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _common(ud)
    ul = usub.add_parser("list", help="list accounts", description="List accounts.")
    _common(ul)

    t = sub.add_parser("token", help="manage app-password tokens (HTTP Bearer)",
                       description="Manage a user's app-password tokens: each is sent by "
                       "JMAP clients as \"Authorization: Bearer TOKEN\" instead of the "
                       "account password, and can be revoked alone.")
    tsub = t.add_subparsers(dest="token_command", metavar="ACTION")
    tsub.required = True
    ta = tsub.add_parser("add", help="make a token and print it (once)",
                         description="Make a new token named NAME for USER and print it. "
                         "It is shown only this once: the store keeps only its hash.")
    ta.add_argument("user")
    ta.add_argument("name", help="a label for the token, e.g. the client's name")
    _common(ta)
    tl = tsub.add_parser("list", help="list a user's tokens",
                         description="List USER's tokens: name, created, last used.")
    tl.add_argument("user")
    _common(tl)
    tr = tsub.add_parser("revoke", help="revoke a token",
                         description="Revoke USER's token NAME: it stops working at once.")
    tr.add_argument("user")
    tr.add_argument("name")
    _common(tr)

    ea = sub.add_parser("eas", help="ActiveSync devices: list, remote wipe, status, forget",
                        description="Manage a user's ActiveSync devices (by DeviceId).")
    easub = ea.add_subparsers(dest="eas_command", metavar="ACTION")
    easub.required = True
    el = easub.add_parser("list", help="list the user's devices",
                          description="List USER's devices: DeviceId, DeviceType, first "
                          "request (UTC), provisioned. They count against [eas] "
                          "max_devices_per_user; 'forget' frees a slot.")
    el.add_argument("user")
    _common(el)
    for action, text in (("wipe", "ask the device to wipe itself at its next request"),
                         ("status", "show the device's provisioning state"),
                         ("forget", "drop the device's state (it provisions and syncs "
                                    "again; ends a wipe)")):
        ep = easub.add_parser(action, help=text, description=text[0].upper() + text[1:] + ".")
        ep.add_argument("user")
        ep.add_argument("device", help="the DeviceId the device sends")
        _common(ep)

    i = sub.add_parser("import", help="import a Maildir, Maildir++ tree or mbox",
                       description="Import mail into an account. Resumable: run the same "
                       "command again after an interruption and it continues.")
    i.add_argument("user", help="the account to import into")
    i.add_argument("source", help="a Maildir, a Maildir++ root, an mbox file or a directory of "
                   "mbox files")
    i.add_argument("--into", metavar="MAILBOX", default=None,
                   help="place the imported tree under this mailbox (\"/\" separates levels)")
    i.add_argument("--format", choices=["auto", "maildir", "mbox"], default="auto")
    i.add_argument("--no-resume", action="store_true",
                   help="ignore the journal of an earlier interrupted run")
    _common(i)

    e = sub.add_parser("export", help="export an account to Maildir++",
                       description="Write the whole account to DIR as a Maildir++ tree "
                       "(flags in file names, keywords in dovecot-keywords).")
    e.add_argument("user")
    e.add_argument("dir")
    _common(e)

    d = sub.add_parser("dns", help="print the DNS records to publish for a mail domain",
                       description="Print the RFC 6186 SRV records (and autoconfig/"
                       "autodiscover records) matching the configured listeners, with notes "
                       "on the TLS certificate names clients will check (RFC 7817).")
    d.add_argument("domain", help="the mail domain, e.g. example.org")
    _common(d)

    r = sub.add_parser(
        "reindex", help="rebuild the message indexes from the stored mail",
        description="Rebuild the prepared index of every stored message (ENVELOPE, "
        "BODYSTRUCTURE, search text, JMAP properties) from the stored raw message, for one "
        "account or all of them. Run it after an upgrade whose notes ask for it (the server "
        "logs a notice while older indexes remain), or after a parser fix. Safe while the "
        "server runs: ids, UIDs and flags do not change. Resumable: run the same command "
        "again after an interruption and it continues where it stopped.")
    r.add_argument("user", nargs="?", default=None,
                   help="the account to reindex (default: every account)")
    r.add_argument("--outdated-only", action="store_true",
                   help="rebuild only indexes older than the current format (faster after "
                   "an upgrade; a parser fix needs the full run)")
    r.add_argument("--restart", action="store_true",
                   help="forget an interrupted run and start over")
    _common(r)

    c = sub.add_parser("check", help="verify the store's invariants",
                       description="Verify every store invariant; exit 1 if any is broken.")
    _common(c)

    b = sub.add_parser(
        "backup", help="copy the store, consistently, while the server runs",
        description="Write a consistent, compacted copy of the store to DIR/store/data.mdb "
        "(LMDB's copy with compaction, from one read snapshot: safe while the server runs "
        "and delivers). DIR must be new or empty. To restore, stop the server and copy "
        "DIR/store to the data directory's store/ (or use DIR as --data-dir).")
    b.add_argument("dir", help="the backup directory (created; must be empty)")
    _common(b)
    return p


def _read_password(args, prompt="Password: ") -> str:
    if args.password_stdin:
        pw = sys.stdin.readline().rstrip("\r\n")
    else:
        pw = getpass.getpass(prompt)
        if pw != getpass.getpass("Again: "):
            raise SystemExit("error: the passwords do not match")
    if not pw:
        raise SystemExit("error: the password is empty")
    return pw


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load(args.config, data_dir=args.data_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(cfg.log_level)
    try:
        return _dispatch(args, cfg)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # imported here: `serve`'s supervisor imports no store (server/workers.py)
        from .store import StoreError

        if not isinstance(exc, StoreError):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _open_store(cfg, *, create: bool = False):
    """The existing store (StoreMissing when there is none, unless CREATE)."""
    from .server.app import open_store

    if create:
        _refuse_orphaned_data_dir(cfg)
    s = open_store(cfg, create=create)
    s.start()
    return s


def _refuse_orphaned_data_dir(cfg) -> None:
    """A store is created only in an empty or absent data directory: one
    that holds other things (TLS keys, a lock file) but no store lost it."""
    from .store import StoreDamaged
    from .store.lmdb_store import store_state

    if store_state(cfg.store_path) == "present" or store_state(cfg.data_dir) != "present":
        return
    others = sorted(set(os.listdir(cfg.data_dir)) - {"store"})
    if others:
        raise StoreDamaged(
            f"the data directory {cfg.data_dir} holds {', '.join(others)} but no mail store "
            f"({cfg.store_path}/data.mdb): restore the store from a backup "
            "(docs/operations.md, \"Backups\"), or use an empty directory for a new store")


def _backup(cfg, target: str) -> int:
    """Copy the store to TARGET/store/data.mdb from one read snapshot."""
    from .store.backup import backup_store
    from .server.app import open_store

    store = open_store(cfg, create=False, readonly=True)
    try:
        out = backup_store(store, target)
    finally:
        store.close()
    print(f"backed up {cfg.store_path} to {out} ({os.path.getsize(out)} bytes)")
    return 0


def _token(args, cfg) -> int:
    import time

    from . import tokens

    def when(t: int) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "never"

    store = _open_store(cfg)
    try:
        if args.token_command == "add":
            token = tokens.add(store, args.user, args.name)
            print(token)
            print(f"(token {args.name!r} of {args.user}: shown only now; use it as the "
                  "password or as \"Authorization: Bearer ...\")", file=sys.stderr)
        elif args.token_command == "list":
            rows = tokens.list_tokens(store, args.user)
            if not rows:
                print(f"no tokens for {args.user} (add one with: mailaccess token add "
                      f"{args.user} NAME)")
            for t in rows:
                print(f"{t.name}\tcreated {when(t.created)}\tlast used {when(t.last_used)}")
        else:
            tokens.revoke(store, args.user, args.name)
            print(f"revoked token {args.name!r} of {args.user}")
    finally:
        store.close()
    return 0


def _eas(args, cfg) -> int:
    import json

    from . import accounts
    from .server import eas_provision as prov

    store = _open_store(cfg)
    try:
        a = accounts.lookup(store, args.user)
        if a is None:
            print(f"error: no account {args.user}", file=sys.stderr)
            return 1
        if args.eas_command == "list":
            for dev in prov.list_devices(store, a.id):
                print("\t".join(str(dev[k]) for k in ("device", "type", "since", "provisioned")))
        elif args.eas_command == "wipe":
            prov.request_wipe(store, a.id, args.device)
            print(f"device {args.device} of {args.user} will be wiped at its next request")
        elif args.eas_command == "status":
            st = prov.device_status(store, a.id, args.device)
            if st is None:
                print(f"no device {args.device} for {args.user}")
                return 1
            print(json.dumps({k: v for k, v in st.items() if k not in ("key", "temp")},
                             indent=2, sort_keys=True))
        else:
            prov.forget_device(store, a.id, args.device)
            print(f"forgot device {args.device} of {args.user}")
    finally:
        store.close()
    return 0


def _dispatch(args, cfg) -> int:
    if args.command == "serve":
        return _serve(args, cfg)
    if args.command == "user":
        from . import accounts
        from .auth.hashing import Argon2Params, Hasher

        # hash with the configured parameters ([auth]), as the server does
        hasher = Hasher(Argon2Params.from_config(cfg.auth))
        store = _open_store(cfg, create=args.user_command == "add")
        try:
            if args.user_command == "add":
                pw = _read_password(args)
                accounts.add_user(store, args.name, pw, args.quota, hasher=hasher)
                print(f"created account {args.name}")
            elif args.user_command == "passwd":
                pw = _read_password(args)
                accounts.set_password(store, args.name, pw, hasher=hasher)
                print(f"password of {args.name} changed")
            elif args.user_command == "delete":
                if not args.yes:
                    if not sys.stdin.isatty():
                        raise SystemExit("error: pass --yes to delete without a prompt")
                    if input(f"Delete {args.name} and all its mail? [y/N] ").lower() != "y":
                        return 1
                accounts.delete_user(store, args.name)
                print(f"deleted account {args.name}")
            else:
                rows = accounts.list_users(store)
                if not rows:
                    print("no accounts (add one with: mailaccess user add NAME)")
                for name, n, used in rows:
                    print(f"{name}\t{n} messages\t{used} bytes")
        finally:
            store.close()
        return 0
    if args.command == "token":
        return _token(args, cfg)
    if args.command == "eas":
        return _eas(args, cfg)
    if args.command == "import":
        from .importer import import_path
        from .progress import Progress

        store = _open_store(cfg)
        try:
            into = args.into.split("/") if args.into else None
            summary = import_path(store, args.user, args.source, into=into, fmt=args.format,
                                  progress=Progress("importing"), resume=not args.no_resume)
        finally:
            store.close()
        print(summary)
        return 0 if not getattr(summary, "failed", 0) else 1
    if args.command == "export":
        from .exporter import export_account
        from .progress import Progress

        store = _open_store(cfg)
        try:
            summary = export_account(store, args.user, args.dir, progress=Progress("exporting"))
        finally:
            store.close()
        print(summary)
        return 0
    if args.command == "reindex":
        from .progress import Progress
        from .reindex import reindex

        store = _open_store(cfg)
        try:
            summary = reindex(store, args.user, progress=Progress("reindexing"),
                              outdated_only=args.outdated_only, restart=args.restart)
        finally:
            store.close()
        print(summary)
        return 0
    if args.command == "backup":
        return _backup(cfg, args.dir)
    if args.command == "dns":
        from .dnsrecords import main_dns

        return main_dns(cfg, args.domain)
    if args.command == "check":
        from .check import check_store

        store = _open_store(cfg)
        try:
            problems = check_store(store)
        finally:
            store.close()
        for p in problems:
            print(p)
        print("store is consistent" if not problems else f"{len(problems)} problem(s) found")
        return 0 if not problems else 1
    raise AssertionError(args.command)


def _serve(args, cfg) -> int:
    import dataclasses

    if args.no_demo:
        cfg = dataclasses.replace(cfg, demo_account=False)
    if cfg.server.count() > 1:
        # worker processes under a supervisor (server/workers.py), which
        # imports none of the server: the workers' loader does
        from .server import memory, workers

        # before any thread: the allocator's arenas and mmap threshold
        memory.tune_malloc()
        try:
            return workers.supervise(cfg, prepare=lambda: _prepare_data_dir(cfg),
                                     banner=lambda bound, demo:
                                     _print_banner(cfg, bound, demo, cfg.server.count()))
        except SystemExit as exc:
            if isinstance(exc.code, str):
                print(f"error: {exc.code}", file=sys.stderr)
                return 1
            raise

    import trio

    from .server import app
    from .store import StoreError

    try:
        # a store is created on the first start only (the store logs it)
        _prepare_data_dir(cfg)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    # before any thread: the allocator's arenas and mmap threshold
    from .server import memory

    memory.tune_malloc()

    async def run():
        async with trio.open_nursery() as n:
            ctx = await n.start(app.serve, cfg)
            with ctx.store.view() as v:
                demo = v.account_by_name(app.DEMO_USER) is not None
            _print_banner(cfg, ctx.bound, demo)

    try:
        trio.run(run)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"error: {exc.code}", file=sys.stderr)
            return 1
        raise
    except BaseExceptionGroup as group:
        # the store refused to open (format, index version) inside the nursery
        refused, rest = group.split(StoreError)
        if refused is None or rest is not None:
            raise
        print(f"error: {_leaves(refused)[0]}", file=sys.stderr)
        return 1
    return 0


def _prepare_data_dir(cfg) -> None:
    """Refuse an orphaned data directory (StoreError), then make it."""
    _refuse_orphaned_data_dir(cfg)
    os.makedirs(cfg.data_dir, exist_ok=True)


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _print_banner(cfg, bound, demo: bool, workers: int = 1) -> None:
    lines = ["", "mailaccess is running (Ctrl-C stops it)"]
    if workers > 1:
        lines[-1] = f"mailaccess is running, {workers} worker processes (Ctrl-C stops it)"
    for name, addrs in bound.items():
        for host, port in addrs:
            lines.append(f"  {name:<6} {host}:{port}")
    lines.append(f"  data   {os.path.abspath(cfg.data_dir)}")
    if cfg.demo_account and demo:
        if isinstance(demo, tuple):         # (user, password), from the supervisor
            DEMO_USER, DEMO_PASSWORD = demo
        else:
            from .server.app import DEMO_PASSWORD, DEMO_USER

        lines.append(f"  demo account: user {DEMO_USER!r}, password {DEMO_PASSWORD!r}")
    if not cfg.tls.cert:
        lines.append(f"  TLS: self-signed; clients can trust "
                     f"{os.path.join(cfg.data_dir, 'tls', 'selfsigned-ca.pem')}")
    print("\n".join(lines) + "\n", flush=True)


if __name__ == "__main__":
    sys.exit(main())
