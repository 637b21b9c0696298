"""LIST/LSUB with many mailboxes against Dovecot, on the same tree.

    .venv/bin/python bench/bench_list.py [--mailboxes N] [--rounds R] [TREE]

Starts mailaccess (TREE, default this checkout) and Dovecot (bench/dovecot.py,
as ab_store1 does) on loopback, creates the same N mailboxes (default 1,000:
`dN/subM`, 100 a parent) in each with pipelined CREATEs, then times each
command R times (default 5) from one imaplib client: the first answer after
the tree changed ("first": a CREATE and DELETE of a scratch mailbox come
before it) and a repeated one ("again").  Times are at the client (imaplib's
parse of the answer included, the same for both servers); ratio > 1 means
mailaccess is faster.  Every answer is compared between the servers (same
lines, in any order, less the special-use mailboxes mailaccess makes for every
account: Drafts, Sent, Trash, Junk, Archive); a difference is reported and
fails the run.
"""
import argparse
import imaplib
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ab_store1 as ab  # noqa: E402
import bench_stress as bs  # noqa: E402

COMMANDS = [
    ("LIST * ", ("LIST", '""', "*")),
    ("LIST %", ("LIST", '""', "%")),
    ("LIST d1*", ("LIST", '""', "d1*")),
    ("LSUB *", ("LSUB", '""', "*")),
    ("LIST RETURN (CHILDREN)", ("LIST", '""', "*", "RETURN (CHILDREN)")),
]


def create(im: imaplib.IMAP4, n: int) -> float:
    t = time.perf_counter()
    tags = []
    for i in range(n):
        name = f"d{i // 100}" if i % 100 == 0 else f"d{i // 100}/sub{i}"
        tag = im._new_tag()
        tags.append(tag)
        im.send(tag + b' CREATE "' + name.encode() + b'"\r\n')
    pending = set(tags)
    while pending:
        line = im._get_line()
        tag = line.split(b" ", 1)[0]
        if tag in pending:
            if b" OK" not in line[:len(tag) + 4]:
                raise SystemExit(f"CREATE failed: {line!r}")
            pending.discard(tag)
    im.subscribe("d1/sub105")
    im.subscribe("INBOX")     # (mailaccess subscribes it when it makes the account)
    return time.perf_counter() - t


DEFAULTS = tuple(b" " + n for n in (b"Drafts", b"Sent", b"Trash", b"Junk", b"Archive"))


def timed(im, args):
    t = time.perf_counter()
    typ, data = im._simple_command(*args)
    lines = im._untagged_response(typ, data, args[0])[1]
    dt = time.perf_counter() - t
    if typ != "OK":
        raise SystemExit(f"{args}: {typ} {data}")
    return dt, sorted(x for x in lines if x is not None and not x.endswith(DEFAULTS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mailboxes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("tree", nargs="?", default=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    a = ap.parse_args()
    os.chdir(tempfile.gettempdir())
    servers, clients = [], {}
    try:
        for spec in (a.tree, "dovecot"):
            srv, port = ab.start(spec)
            servers.append(srv)
            im = imaplib.IMAP4("127.0.0.1", port)
            im.login(bs.USER, bs.PASSWORD)
            took = create(im, a.mailboxes)
            name = "dovecot" if spec == "dovecot" else "mailaccess"
            print(f"{name}: {a.mailboxes} mailboxes created in {took:.1f} s", flush=True)
            clients[name] = im
        failed = False
        print(f"{'command':24} {'mailaccess first/again ms':>27} {'Dovecot first/again ms':>24}"
              f" {'ratio first/again':>18}")
        for label, args in COMMANDS:
            res = {}
            for name, im in clients.items():
                first, again, answer = [], [], None
                for _ in range(a.rounds):
                    im.create("scratch")
                    im.delete("scratch")
                    dt, got = timed(im, args)
                    first.append(dt)
                    dt, again_got = timed(im, args)
                    again.append(dt)
                    if got != again_got:
                        print(f"  {name} {label}: the repeated answer differs")
                        failed = True
                    answer = got
                res[name] = (statistics.median(first) * 1000, statistics.median(again) * 1000,
                             answer)
            (mf, ma, mans), (df, da, dans) = res["mailaccess"], res["dovecot"]
            if mans != dans:
                print(f"  {label}: answers differ ({len(mans)} vs {len(dans)} lines)")
                failed = True
            print(f"{label:24} {mf:13.1f} / {ma:9.1f} {df:12.1f} / {da:9.1f}"
                  f" {df / mf:8.2f}x / {da / ma:5.2f}x", flush=True)
        for im in clients.values():
            im.logout()
        if failed:
            raise SystemExit(1)
    finally:
        ab.stop_all(servers)


if __name__ == "__main__":
    main()
