"""bench_imap's workloads on a mailbox loaded in a fixed order (SORT, THREAD,
more SEARCH keys, whole-header FETCH, bulk EXPUNGE and MOVE).

Names for bench_imap's --only: sort, thread, search2, fetch2, expunge.

SORT and THREAD answers break ties by sequence number and ARRIVAL sorts by
the internal date, so the two servers can only be held to the same answer
when their mailboxes hold the same messages in the same order with the same
dates: bench_imap's concurrent APPEND to INBOX gives neither.  These
workloads therefore run on the mailbox ``Ordered``, which one connection
fills by pipelined APPENDs (LITERAL+, one after the other, so message i gets
UID i + 1 on both servers) of bench_imap's corpus with two changes: each
message's Date: header is spread over November 2025 (the corpus has one day
for all; sorted by DATE, with many equal dates left so ties are decided by
UID), and each APPEND names an internal date spread over October 2025 (three
messages share each) and \\Seen for two messages of three.

Every answer is checked: against what the corpus says where a client can
tell (SEARCH UNSEEN, LARGER, FROM, SUBJECT, HEADER; the header bytes of
FETCH BODY[HEADER]; EXPUNGE and MOVE counts), and between the servers for
everything (the parsed answers' SHA-1 compared after both ran: the table's
"same" column).  Times: "first" is the first command after SELECT (nothing
of this mailbox computed yet in this session), "warm" the best of the
repeats; "after new" the same command right after another connection
APPENDed one message and this one saw it (NOOP): a cache has to update or
recompute, not repeat.

``expunge`` changes the mailbox (it runs last of these): UID COPY of all to
a new mailbox, STORE 1:* +FLAGS (\\Deleted) there and EXPUNGE; then UID MOVE
of the first half of ``Ordered`` to another mailbox.
"""
from __future__ import annotations

import hashlib
import imaplib
import re
import socket
import threading
import time

from common import message

BOX = "Ordered"
NAMES = ("sort", "thread", "search2", "fetch2", "expunge")
HDR_DATE = re.compile(rb"^Date: [^\r\n]*\r\n", re.M)
SORTS = (("ARRIVAL", "(ARRIVAL)", "ALL"), ("DATE", "(DATE)", "ALL"),
         ("SUBJECT", "(SUBJECT)", "ALL"), ("FROM", "(FROM)", "ALL"),
         ("REVERSE DATE", "(REVERSE DATE)", "ALL"), ("DATE UNSEEN", "(DATE)", "UNSEEN"))
THREADS = ("REFERENCES", "ORDEREDSUBJECT")
FETCHES = ("BODY.PEEK[HEADER]", "ENVELOPE", "BODYSTRUCTURE")
MONTHS = ("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec").split()


# --- the mailbox -------------------------------------------------------------------------------

def redate(m: bytes, i: int, n: int) -> bytes:
    """M with its Date: spread over November 2025 (30 days, 12 distinct
    times a day, so about n/360 messages share each date)."""
    day = min(30, 1 + (i * 30) // max(n, 1))
    date = f"Date: Sat, {day} Nov 2025 {(i % 12) * 2:02d}:{i % 60:02d}:00 +0000\r\n"
    return HDR_DATE.sub(date.encode(), m, count=1)


def internal_date(i: int, n: int) -> str:
    """Spread over October 2025, three consecutive messages on one date."""
    secs = ((i // 3) * 3 * 30 * 86400) // max(n, 1)
    day, rest = divmod(secs, 86400)
    return (f"{1 + day:02d}-Oct-2025 {rest // 3600:02d}:{rest // 60 % 60:02d}:"
            f"{rest % 60:02d} +0000")


def flags(i: int) -> str:
    return "" if i % 3 == 0 else "\\Seen"


class Box:
    """What the client knows of ``Ordered``: its messages in UID order."""

    def __init__(self, msgs: list[bytes]):
        n = len(msgs)
        self.msgs = [redate(m, i, n) for i, m in enumerate(msgs)]
        self.seen = [bool(flags(i)) for i in range(n)]
        self.added = 0

    def extra(self) -> tuple[bytes, str, str]:
        """The next message another connection APPENDs (\\Seen, dated last)."""
        i = len(self.msgs)
        m = redate(message(20_000_000 + self.added, 4_000), i, i)
        self.added += 1
        return m, "\\Seen", "31-Oct-2025 23:00:00 +0000"

    def appended(self, m: bytes) -> None:
        self.msgs.append(m)
        self.seen.append(True)


def load(port: int, user: str, password: str, box: Box) -> float:
    """CREATE Ordered and APPEND the box's messages in order on one
    connection, pipelined (LITERAL+); seconds taken."""
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(f"l LOGIN {user} {password}\r\nc CREATE {BOX}\r\n".encode())
    for tag in (b"l ", b"c "):
        while True:
            line = f.readline()
            if line.startswith(tag):
                if not line.startswith(tag + b"OK"):
                    raise SystemExit(f"load: {line!r}")
                break
    n = len(box.msgs)
    t0 = time.perf_counter()

    def send():
        buf = []
        for i, m in enumerate(box.msgs):
            fl = flags(i)
            buf.append(f'a{i} APPEND {BOX} ({fl}) "{internal_date(i, n)}" {{{len(m)}+}}\r\n'
                       .encode() + m + b"\r\n")
            if len(buf) >= 32:
                s.sendall(b"".join(buf))
                buf = []
        s.sendall(b"".join(buf))

    th = threading.Thread(target=send, daemon=True)
    th.start()
    done = 0
    while done < n:
        line = f.readline()
        if not line:
            raise SystemExit("load: connection closed")
        if line.startswith(b"a"):
            if b" OK" not in line[:12]:
                raise SystemExit(f"load: {line!r}")
            done += 1
    th.join()
    dt = time.perf_counter() - t0
    s.sendall(b"z LOGOUT\r\n")
    s.close()
    return dt


# --- parsing answers ---------------------------------------------------------------------------

def parse(data: bytes, pos: int = 0) -> tuple[list, int]:
    """IMAP tokens of DATA from POS into nested lists (atoms, quoted strings
    and literals as bytes, NIL as None) up to a closing paren or the end."""
    out: list = []
    n = len(data)
    while pos < n:
        c = data[pos]
        if c in b" \r\n":
            pos += 1
        elif c == 0x28:
            sub, pos = parse(data, pos + 1)
            out.append(sub)
        elif c == 0x29:
            return out, pos + 1
        elif c == 0x22:
            pos += 1
            buf = bytearray()
            while data[pos] != 0x22:
                if data[pos] == 0x5C:
                    pos += 1
                buf.append(data[pos])
                pos += 1
            out.append(bytes(buf))
            pos += 1
        elif c == 0x7B:
            close = data.index(b"}", pos)
            size = int(data[pos + 1:close].rstrip(b"+"))
            start = close + 1                   # (imaplib took the CRLF)
            out.append(data[start:start + size])
            pos = start + size
        else:
            end = pos
            while end < n and data[end] not in b" ()\r\n" and not (
                    data[end] == 0x5B and data[pos:end].upper().startswith(b"BODY")):
                end += 1
            if end < n and data[end] == 0x5B:       # BODY[...]<...>: one atom
                end = data.index(b"]", end) + 1
                while end < n and data[end] not in b" ()":
                    end += 1
            atom = data[pos:end]
            out.append(None if atom == b"NIL" else atom)
            pos = end
    return out, pos


def digest(obj) -> str:
    return hashlib.sha1(repr(obj).encode()).hexdigest()[:16]


def numbers(data: list, word: bytes) -> list[int]:
    """The numbers of a ``* SORT``/``* SEARCH`` answer (imaplib's data[0])."""
    line = data[0] or b""
    return [int(x) for x in line.split()]


def timed(conn: imaplib.IMAP4, runs: int, args: tuple, check) -> tuple[float, float, object]:
    """``conn.uid(*ARGS)`` run RUNS times -> (first s, best s, CHECK(its data));
    only the command is timed (CHECK parses and checks the answer after),
    and every run must give the same answer."""
    times, answer = [], None
    for r in range(runs):
        t0 = time.perf_counter()
        typ, data = conn.uid(*args)
        times.append(time.perf_counter() - t0)
        got = check(ok(typ, data, " ".join(args)))
        if r and got != answer:
            raise SystemExit(f"{' '.join(args)}: a repeat gave another answer")
        answer = got
    return times[0], min(times[1:] or times), answer


def ok(typ, data, what):
    if typ != "OK":
        raise SystemExit(f"{what}: {typ} {data!r}")
    return data


def append_other(port, login, box: Box, conn: imaplib.IMAP4) -> None:
    """(LOGIN: port -> a logged-in imaplib client.)"""
    """Another connection APPENDs the box's next message; CONN sees it (NOOP)."""
    m, fl, date = box.extra()
    other = login(port)
    ok(*other.append(BOX, f"({fl})", f'"{date}"', m), "APPEND (other)")
    other.logout()
    box.appended(m)
    ok(*conn.noop(), "NOOP")
    got = int(ok(*conn.uid("SEARCH", "ALL"), "SEARCH ALL")[0].split()[-1])
    if got != len(box.msgs):
        raise SystemExit(f"after APPEND: top UID {got}, expected {len(box.msgs)}")


# --- workloads ---------------------------------------------------------------------------------

def w_sort(conn, port, login, box: Box, runs: int) -> dict:
    res = {}
    for label, keys, crit in SORTS:
        first, warm, ans = timed(conn, runs, ("SORT", keys, "UTF-8", crit),
                                 lambda d: numbers(d, b"SORT"))
        want = sorted(i + 1 for i in range(len(box.msgs))
                      if crit == "ALL" or not box.seen[i])
        if sorted(ans) != want:
            raise SystemExit(f"SORT {keys} {crit}: {len(ans)} UIDs, expected {len(want)}")
        if label == "ARRIVAL" and ans != want:     # internal dates ascend with the UIDs
            raise SystemExit("SORT (ARRIVAL): not in UID order")
        res[label] = {"first": first, "warm": warm, "answer": digest(ans)}
    append_other(port, login, box, conn)
    t0 = time.perf_counter()
    data = ok(*conn.uid("SORT", "(DATE)", "UTF-8", "ALL"), "SORT after")
    dt = time.perf_counter() - t0
    ans = numbers(data, b"SORT")
    if sorted(ans) != list(range(1, len(box.msgs) + 1)):
        raise SystemExit("SORT (DATE) after APPEND: wrong UIDs")
    res["DATE"]["after"] = dt
    res["DATE"]["answer_after"] = digest(ans)
    return res


def w_thread(conn, port, login, box: Box, runs: int) -> dict:
    res = {}

    def check(data, alg):
        tree, _ = parse(b" ".join(d for d in data if d))
        flat = re.findall(rb"\d+", b" ".join(d for d in data if d))
        if sorted(map(int, flat)) != list(range(1, len(box.msgs) + 1)):
            raise SystemExit(f"THREAD {alg}: {len(flat)} UIDs, expected {len(box.msgs)}")
        return tree

    for alg in THREADS:
        first, warm, ans = timed(conn, runs, ("THREAD", alg, "UTF-8", "ALL"),
                                 lambda d, a=alg: check(d, a))
        res[alg] = {"first": first, "warm": warm, "answer": digest(ans)}
    append_other(port, login, box, conn)
    for alg in THREADS:
        t0 = time.perf_counter()
        data = ok(*conn.uid("THREAD", alg, "UTF-8", "ALL"), f"THREAD {alg}")
        res[alg]["after"] = time.perf_counter() - t0
        ans = check(data, alg)
        res[alg]["answer_after"] = digest(ans)
    return res


def searches(box: Box) -> list[tuple[str, tuple, object]]:
    """(label, UID SEARCH arguments, the expected UIDs or None when only the
    other server can tell)."""
    ms = box.msgs
    idx = lambda p: [i + 1 for i, m in enumerate(ms) if p(i, m)]  # noqa: E731
    hdr = lambda m: m[:m.index(b"\r\n\r\n") + 2]  # noqa: E731
    return [
        ("UNSEEN", ("UNSEEN",), idx(lambda i, m: not box.seen[i])),
        ("LARGER 20000", ("LARGER", "20000"), idx(lambda i, m: len(m) > 20000)),
        ("SINCE 16-Oct-2025", ("SINCE", "16-Oct-2025"), None),
        ("SENTSINCE 16-Nov-2025", ("SENTSINCE", "16-Nov-2025"), None),
        ("FROM sender42@", ("FROM", "sender42@"),
         idx(lambda i, m: re.search(rb"(?m)^From: [^\r]*sender42@", hdr(m)) is not None)),
        ("SUBJECT invoice", ("SUBJECT", "invoice"),
         idx(lambda i, m: re.search(rb"(?mi)^Subject: [^\r]*invoice", hdr(m)) is not None)),
        ("HEADER Message-ID bench42", ("HEADER", "Message-ID", "bench42"),
         idx(lambda i, m: re.search(rb"(?mi)^Message-ID: [^\r]*bench42", hdr(m)) is not None)),
    ]


def w_search2(conn, box: Box, runs: int) -> dict:
    res = {}
    for label, args, want in searches(box):
        first, warm, ans = timed(conn, runs, ("SEARCH", *args), lambda d: numbers(d, b"SEARCH"))
        if want is not None and ans != want:
            raise SystemExit(f"SEARCH {label}: {len(ans)} hits, expected {len(want)}")
        if not ans or len(ans) == len(box.msgs):
            raise SystemExit(f"SEARCH {label}: {len(ans)} hits of {len(box.msgs)}: "
                             "pick a key that tells messages apart")
        res[label] = {"first": first, "warm": warm, "answer": digest(ans), "hits": len(ans)}
    return res


def fetch_answer(data: list, item: str, box: Box) -> list:
    """[(uid, value)] of a UID FETCH 1:* (ITEM) answer, checked."""
    from bench_imap import split_responses
    out = []
    for r in split_responses(data):
        toks, _ = parse(r)
        # imaplib keeps "n (k v k v ...)" of "* n FETCH (...)"
        kv = next(t for t in toks if isinstance(t, list))
        d = {kv[i].upper(): kv[i + 1] for i in range(0, len(kv) - 1, 2)}
        uid = int(d[b"UID"])
        name = b"BODY[HEADER]" if item.startswith("BODY.PEEK") else item.encode()
        if name not in d:
            raise SystemExit(f"FETCH {item}: no {name!r} in {r[:200]!r}")
        v = d[name]
        if item == "BODYSTRUCTURE":
            # types, subtypes, parameter names and encodings are case-insensitive
            # (RFC 2045 5.1, 6.1): Dovecot sends them as the message has them
            v = _lower(v)
        out.append((uid, v))
    out.sort()
    if [u for u, _ in out] != list(range(1, len(box.msgs) + 1)):
        raise SystemExit(f"FETCH {item}: {len(out)} messages, expected {len(box.msgs)}")
    if item.startswith("BODY.PEEK"):
        for u, v in out:
            m = box.msgs[u - 1]
            if v != m[:m.index(b"\r\n\r\n") + 4]:
                raise SystemExit(f"FETCH BODY[HEADER] of UID {u}: not the message's header")
    return out


def _lower(v):
    if isinstance(v, list):
        return [_lower(x) for x in v]
    return v.lower() if isinstance(v, bytes) else v


def w_fetch2(conn, box: Box, runs: int) -> dict:
    res = {}
    for item in FETCHES:
        first, warm, ans = timed(conn, runs, ("FETCH", "1:*", f"({item})"),
                                 lambda d, item=item: fetch_answer(d, item, box))
        # the first message whose value differs tells what differs between the servers
        res[item] = {"first": first, "warm": warm, "answer": digest(ans),
                     "values": [digest(v) for _u, v in ans], "sample": ans[:3]}
    return res


def w_expunge(conn, box: Box) -> dict:
    n = len(box.msgs)
    ok(*conn.create("Copied"), "CREATE")
    t0 = time.perf_counter()
    ok(*conn.uid("COPY", "1:*", "Copied"), "UID COPY")
    copy = time.perf_counter() - t0
    if int(ok(*conn.select("Copied"), "SELECT")[0]) != n:
        raise SystemExit("COPY: wrong count")
    t0 = time.perf_counter()
    data = ok(*conn.store("1:*", "+FLAGS", "(\\Deleted)"), "STORE \\Deleted")
    store = time.perf_counter() - t0
    if sum(1 for d in data if d) != n:
        raise SystemExit("STORE \\Deleted: wrong count of FETCH answers")
    t0 = time.perf_counter()
    data = ok(*conn.expunge(), "EXPUNGE")
    expunge = time.perf_counter() - t0
    if len([d for d in data if d]) != n or int(ok(*conn.select("Copied"), "SELECT")[0]):
        raise SystemExit(f"EXPUNGE: {len(data)} answers, expected {n}, box not empty")
    ok(*conn.select(BOX), "SELECT")
    ok(*conn.create("Moved"), "CREATE")
    half = n // 2
    t0 = time.perf_counter()
    ok(*conn.uid("MOVE", f"1:{half}", "Moved"), "UID MOVE")
    move = time.perf_counter() - t0
    left = ok(*conn.uid("SEARCH", "ALL"), "SEARCH")[0].split()
    st = ok(*conn.status("Moved", "(MESSAGES)"), "STATUS")[0]
    if [int(x) for x in left] != list(range(half + 1, n + 1)) or \
            int(re.search(rb"MESSAGES (\d+)", st).group(1)) != half:
        raise SystemExit("MOVE: wrong messages left or moved")
    return {"copy": copy, "store": store, "expunge": expunge, "move": move,
            "answer": digest((n, half))}


def run(want, server_name, port, login, creds, msgs, runs) -> dict:
    """The workloads of NAMES that WANT accepts, on a fresh ``Ordered``
    (LOGIN: port -> a logged-in imaplib client; CREDS: (user, password))."""
    if not any(want(w) for w in NAMES):
        return {}
    box = Box(msgs)
    res: dict = {"load": load(port, *creds, box)}
    print(f"[{server_name}] {BOX}: {len(box.msgs)} messages in {res['load']:.1f} s", flush=True)
    conn = login(port)
    ok(*conn.select(BOX), "SELECT")
    uids = ok(*conn.uid("SEARCH", "ALL"), "SEARCH ALL")[0].split()
    if [int(u) for u in uids] != list(range(1, len(box.msgs) + 1)):
        raise SystemExit(f"{BOX}: UIDs are not 1..{len(box.msgs)}")
    if want("sort"):
        res["sort"] = w_sort(conn, port, login, box, runs)
    if want("thread"):
        res["thread"] = w_thread(conn, port, login, box, runs)
    if want("search2"):
        res["search2"] = w_search2(conn, box, runs)
    if want("fetch2"):
        res["fetch2"] = w_fetch2(conn, box, max(2, runs - 2))
    if want("expunge"):
        res["expunge"] = w_expunge(conn, box)
    conn.logout()
    for w in NAMES:
        if w in res and w != "expunge" and w != "load":
            for label, r in res[w].items():
                print(f"[{server_name}] {w} {label}: first {r['first'] * 1000:.1f} ms, "
                      f"warm {r['warm'] * 1000:.1f} ms"
                      + (f", after new {r['after'] * 1000:.1f} ms" if "after" in r else ""),
                      flush=True)
    return res


def rows(a: dict, d: dict, add) -> None:
    """The table's rows: ADD(name, ours, dovecot, same answer?)."""
    for w, cmd in (("sort", "UID SORT {}"), ("thread", "UID THREAD {}"),
                   ("search2", "UID SEARCH {}"), ("fetch2", "UID FETCH 1:* ({})")):
        for label, ra in a.get(w, {}).items():
            rd = d.get(w, {}).get(label)
            if rd is None:
                continue
            same = ra["answer"] == rd["answer"]
            name = cmd.format(label)
            if not same and "values" in ra and len(ra["values"]) == len(rd["values"]):
                k = next(i for i, (x, y) in enumerate(zip(ra["values"], rd["values"])) if x != y)
                print(f"  {name}: answers differ, first at UID {k + 1}"
                      + (f": {ra['sample'][k]!r} vs {rd['sample'][k]!r}" if k < 3 else ""))
            add(f"{name} (first)", ra["first"], rd["first"], same)
            add(f"{name} (warm)", ra["warm"], rd["warm"], same)
            if "after" in ra:
                add(f"{name} (after new)", ra["after"], rd["after"],
                    ra["answer_after"] == rd["answer_after"])
    ea, ed = a.get("expunge"), d.get("expunge")
    if ea and ed:
        same = ea["answer"] == ed["answer"]
        for k, label in (("copy", "UID COPY 1:* (all)"), ("store", "STORE 1:* +FLAGS \\Deleted"),
                         ("expunge", "EXPUNGE (all)"), ("move", "UID MOVE half")):
            add(label, ea[k], ed[k], same)
