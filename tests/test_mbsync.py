"""mbsync (isync) as a real IMAP client: a Maildir synced up to mailaccess,
changes on both sides synced both ways, and a no-op sync that changes nothing.

The Maildir side is written and read by this module directly; the server side
is checked over imaplib.  mbsync runs as a subprocess in a worker thread so
the in-process server keeps serving on the Trio loop.
"""
from __future__ import annotations

import dataclasses
import imaplib
import os
import random
import re
import shutil
import subprocess
import time

import pytest
import trio

from imap_helpers import ca_file, connect, imap_port, imaps_port

MBSYNC = shutil.which("mbsync")
if MBSYNC is None:
    pytest.skip("mbsync (Debian package isync) is not installed; scripts/test installs it "
                "when run as root", allow_module_level=True)

pytestmark = [pytest.mark.realclient]


def _mbsync_version() -> tuple[int, ...]:
    out = subprocess.run([MBSYNC, "--version"], capture_output=True, text=True, timeout=30)
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out.stdout + out.stderr)
    return tuple(int(x) for x in m.groups(default="0")) if m else (0, 0, 0)


VERSION = _mbsync_version()
# isync 1.5 renamed SSLType to TLSType (the old name is still accepted there);
# 1.4 introduced Far/Near in place of Master/Slave.
TLS_OPTION = "TLSType" if VERSION >= (1, 5) else "SSLType"
FAR, NEAR = ("Far", "Near") if VERSION >= (1, 4) else ("Master", "Slave")

# Maildir info letters <-> IMAP flags (mbsync's mapping; P needs isync >= 1.4)
LETTER_FLAG = {"D": "\\Draft", "F": "\\Flagged", "P": "$Forwarded", "R": "\\Answered",
               "S": "\\Seen", "T": "\\Deleted"}
FLAG_LETTER = {v.lower(): k for k, v in LETTER_FLAG.items()}

# The Maildir side names folders as mbsync 1.4 does: the raw IMAP name, so a
# non-ASCII mailbox is its modified UTF-7 form on disk ("Entwürfe").
NONASCII_WIRE = "Entw&APw-rfe"
NONASCII = "Entwürfe"


# ----------------------------------------------------------------- running mbsync


def write_rc(tmp_path, ctx, *, tls="STARTTLS", cafile=None, user="alice",
             password="pw") -> str:
    port = imap_port(ctx) if tls == "STARTTLS" else imaps_port(ctx)
    maildir = tmp_path / "Mail"
    maildir.mkdir(exist_ok=True)          # mbsync wants the store's Path to exist
    rc = tmp_path / "mbsyncrc"
    # Host is "localhost", not 127.0.0.1: isync 1.4 checks the certificate's DNS names
    # (then its CN) against Host and ignores IP-address SANs, so with 127.0.0.1 it
    # fails "cannot get certificate common name" on the generated certificate
    # (SANs localhost, 127.0.0.1, ::1; no CN).
    rc.write_text(f"""\
IMAPAccount test
Host localhost
Port {port}
User {user}
Pass {password}
{TLS_OPTION} {tls}
SystemCertificates no
CertificateFile {cafile or ca_file(ctx)}
Timeout 30

IMAPStore remote
Account test

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
{FAR} :remote:
{NEAR} :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    return str(rc)


def _mbsync_blocking(rc: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MBSYNC, "-c", rc, *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "HOME": os.path.dirname(rc)})


async def mbsync(rc: str, *args: str, check=True) -> subprocess.CompletedProcess:
    args = args or ("-a",)
    with trio.fail_after(90):
        p = await trio.to_thread.run_sync(_mbsync_blocking, rc, *args)
    if check:
        assert p.returncode == 0, f"mbsync failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


async def run(fn, *args):
    with trio.fail_after(60):
        return await trio.to_thread.run_sync(fn, *args)


# ----------------------------------------------------------------- the local Maildir


@dataclasses.dataclass
class LocalMsg:
    path: str
    flags: frozenset      # IMAP flags, lower-cased
    data: bytes


def maildir_flags(name: str) -> frozenset:
    _, sep, info = name.partition(":2,")
    return frozenset(LETTER_FLAG[c].lower() for c in info if c in LETTER_FLAG) \
        if sep else frozenset()


def message_id(data: bytes) -> str:
    m = re.search(rb"^Message-ID:\s*(<[^>\r\n]+>)", data, re.M | re.I)
    assert m, data[:300]
    return m.group(1).decode()


def maildir_boxes(root) -> dict[str, str]:
    """{mailbox name: directory} for every Maildir under ROOT (Verbatim layout)."""
    boxes = {}
    for dirpath, dirnames, _ in os.walk(root):
        if {"cur", "new", "tmp"} <= set(dirnames):
            boxes[os.path.relpath(dirpath, root).replace(os.sep, "/")] = dirpath
        dirnames[:] = [d for d in dirnames if d not in ("cur", "new", "tmp")]
    return boxes


def read_local(root) -> dict[str, dict[str, LocalMsg]]:
    out = {}
    for box, d in maildir_boxes(root).items():
        msgs = {}
        for sub in ("new", "cur"):
            for name in os.listdir(os.path.join(d, sub)):
                p = os.path.join(d, sub, name)
                with open(p, "rb") as fh:
                    data = fh.read()
                mid = message_id(data)
                assert mid not in msgs, f"duplicate {mid} in local {box}"
                msgs[mid] = LocalMsg(p, maildir_flags(name), data)
        out[box] = msgs
    return out


def mail(listing: dict[str, tuple]) -> dict[str, tuple]:
    """LISTING without mbsync's own dot-files (.mbsyncstate, .uidvalidity, ...)."""
    return {k: v for k, v in listing.items() if not os.path.basename(k).startswith(".")}


def local_listing(root) -> dict[str, tuple]:
    """Every file under ROOT with its size and mtime (for the no-op check)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


_seq = 0


def deliver_local(boxdir: str, data: bytes, letters: str = "") -> str:
    """Put a message into a Maildir as a mail delivery agent / MUA would."""
    global _seq
    _seq += 1
    base = f"{int(time.time())}.M{_seq}P{os.getpid()}.testhost"
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(boxdir, sub), exist_ok=True)
    tmp = os.path.join(boxdir, "tmp", base)
    with open(tmp, "wb") as fh:
        fh.write(data)
    if letters:
        dest = os.path.join(boxdir, "cur", base + ":2," + "".join(sorted(letters)))
    else:
        dest = os.path.join(boxdir, "new", base)
    os.rename(tmp, dest)
    return dest


def set_local_flags(path: str, letters: str) -> str:
    """Rename a Maildir file to carry exactly LETTERS (moving it to cur/)."""
    d, name = os.path.split(path)
    base = name.partition(":2,")[0]
    dest = os.path.join(os.path.dirname(d), "cur", base + ":2," + "".join(sorted(letters)))
    os.rename(path, dest)
    return dest


def letters_of(flags) -> str:
    return "".join(sorted(FLAG_LETTER[f] for f in flags if f in FLAG_LETTER))


# ----------------------------------------------------------------- messages

_WORDS = ("mail access store index thread flag sync folder message server client "
          "quota modseq header body part attachment grüße naïve café").split()


def make_message(rng: random.Random, mid: str, size: int, subject: str) -> bytes:
    """An RFC 5322 message with LF line ends (as Maildir files are), about SIZE bytes."""
    head = (f"From: Sender {rng.randrange(50)} <sender{rng.randrange(50)}@example.org>\n"
            f"To: alice@example.org\n"
            f"Subject: {subject}\n"
            f"Message-ID: {mid}\n"
            f"Date: Mon, {rng.randrange(1, 28)} Oct 2025 {rng.randrange(24):02d}:"
            f"{rng.randrange(60):02d}:00 +0000\n"
            f"MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset=utf-8\n"
            f"Content-Transfer-Encoding: 8bit\n\n")
    lines, n = [], len(head)
    while n < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 14)))
        lines.append(line)
        n += len(line.encode()) + 1
    return (head + "\n".join(lines) + "\n").encode()


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


_TUID = re.compile(rb"^X-TUID: [^\r\n]*\r?\n", re.M)


def sans_tuid(data: bytes) -> bytes:
    """DATA without the X-TUID header mbsync puts into every copy it makes (it finds
    the copy again by it); everything else must be byte-for-byte what was sent."""
    head, sep, body = data.partition(b"\r\n\r\n" if b"\r\n\r\n" in data else b"\n\n")
    head_nl = head + sep[: len(sep) // 2]
    assert len(_TUID.findall(head_nl)) <= 1 and not _TUID.search(body), data[:400]
    return _TUID.sub(b"", head_nl) + sep[len(sep) // 2:] + body


# ----------------------------------------------------------------- the server side


@dataclasses.dataclass
class ServerMsg:
    uid: int
    flags: frozenset
    data: bytes


_LIST = re.compile(rb'^\((?P<attrs>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')


def list_names(c: imaplib.IMAP4) -> dict[str, bytes]:
    """{wire name: attributes} from LIST "" *."""
    typ, data = c.list('""', "*")
    assert typ == "OK", data
    out = {}
    for item in data:
        if isinstance(item, tuple):       # name sent as a literal
            line, lit = item[0], item[1]
            m = _LIST.match(line.rsplit(b" ", 1)[0] + b" x")
            out[lit.decode()] = m.group("attrs")
            continue
        m = _LIST.match(item)
        assert m, item
        name = m.group("name")
        if name.startswith(b'"'):
            name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
        out[name.decode()] = m.group("attrs")
    return out


def read_server(c: imaplib.IMAP4) -> dict[str, dict[str, ServerMsg]]:
    out = {}
    for name, attrs in list_names(c).items():
        if b"\\noselect" in attrs.lower() or b"\\nonexistent" in attrs.lower():
            continue
        typ, data = c.select(_q(name), readonly=True)
        assert typ == "OK", (name, data)
        msgs = {}
        if int(data[0]):
            typ, data = c.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            assert typ == "OK", data
            for item in data:
                if not isinstance(item, tuple):
                    continue
                meta = item[0]
                uid = int(re.search(rb"UID (\d+)", meta).group(1))
                flags = re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).decode().split()
                body = item[1]
                mid = message_id(body)
                assert mid not in msgs, f"duplicate {mid} on the server in {name}"
                msgs[mid] = ServerMsg(uid, frozenset(f.lower() for f in flags), body)
        out[name] = msgs
        c.close()
    return out


def _q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def server_modseqs(c: imaplib.IMAP4) -> dict[str, bytes]:
    out = {}
    for name, attrs in list_names(c).items():
        if b"\\noselect" in attrs.lower():
            continue
        typ, data = c.status(_q(name), "(MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
        assert typ == "OK", data
        out[name] = data[0].rsplit(b"(", 1)[1]
    return out


def flagview(state) -> dict[str, dict[str, frozenset]]:
    """{mailbox: {Message-ID: flags}}, without \\Recent and empty mailboxes' noise."""
    return {box: {mid: frozenset(f for f in m.flags if f != "\\recent")
                  for mid, m in msgs.items()}
            for box, msgs in state.items()}


# ----------------------------------------------------------------- the scenario

LAYOUT = {                     # mailbox (wire name) -> number of messages
    "INBOX": 160,
    "Archive": 60,             # exists on the server already (created with the account)
    "Lists/python": 40,        # a hierarchy
    "Projects": 25,
    NONASCII_WIRE: 25,
}
# No "P" ($Forwarded) here: mailaccess hands keywords back lower-cased and mbsync 1.4
# then drops P (see test_mbsync_keeps_forwarded_flag).
FLAG_CHOICES = ["", "", "", "S", "S", "S", "FS", "RS", "F", "DS"]


def populate(root, rng) -> dict[str, dict[str, tuple[frozenset, bytes]]]:
    expected = {}
    n = 0
    for box, count in LAYOUT.items():
        d = os.path.join(root, box)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        expected[box] = {}
        for i in range(count):
            n += 1
            mid = f"<m{n}.{box.replace('/', '.').replace('&', '_')}@local.test>"
            r = rng.random()
            size = (rng.randrange(200, 2000) if r < 0.7 else
                    rng.randrange(2000, 40000) if r < 0.95 else
                    rng.randrange(200_000, 1_200_000))
            data = make_message(rng, mid, size, f"{box} message {i}")
            letters = rng.choice(FLAG_CHOICES)
            deliver_local(d, data, letters)
            expected[box][mid] = (frozenset(LETTER_FLAG[c].lower() for c in letters), data)
    return expected


async def test_mbsync_two_way(imap_server, tmp_path):
    ctx = imap_server
    rng = random.Random(6186)
    root = str(tmp_path / "Mail")
    expected = populate(root, rng)
    total = sum(len(v) for v in expected.values())
    assert total >= 300
    rc = write_rc(tmp_path, ctx, tls="STARTTLS")

    # --- 1. first sync: everything goes up --------------------------------------------
    await mbsync(rc)

    def check_up():
        c = connect(ctx)
        names = list_names(c)
        srv = read_server(c)
        c.logout()
        return names, srv

    names, srv = await run(check_up)
    for box, msgs in expected.items():
        assert box in srv, f"{box} not created on the server: {sorted(names)}"
        assert len(srv[box]) == len(msgs), box
        for mid, (flags, data) in msgs.items():
            got = srv[box][mid]
            assert got.flags - {"\\recent"} == flags, (box, mid)
            assert sans_tuid(got.data) == crlf(data), (box, mid)
    # the server's own default mailboxes came down, empty
    local = read_local(root)
    for box in ("Drafts", "Sent", "Trash", "Junk"):
        assert box in srv and local.get(box) == {}, box

    # the non-ASCII mailbox is really "Entwürfe" on the server, not a literal "&APw-":
    # with IMAP4rev2 enabled (UTF-8 names; UTF8=ACCEPT alone is not offered) LIST says so
    def utf8_list():
        c = connect(ctx)
        typ, data = c._simple_command("ENABLE", "IMAP4rev2")
        assert typ == "OK", data
        typ, data = c.list('""', "Entw*")
        c.logout()
        return data
    data = await run(utf8_list)
    assert data == [b'(\\HasNoChildren) "/" "' + NONASCII.encode() + b'"'], data

    # --- 2. a second sync with no changes changes nothing ------------------------------
    def modseqs():
        c = connect(ctx)
        try:
            return server_modseqs(c)
        finally:
            c.logout()

    before_local, before_srv = local_listing(root), await run(modseqs)
    await mbsync(rc)
    assert await run(modseqs) == before_srv
    after_local = local_listing(root)
    # mbsync may rewrite its own state files; the mail files must not change at all
    a, b = mail(after_local), mail(before_local)
    assert a == b, ({k: v for k, v in a.items() if b.get(k) != v},
                    {k: v for k, v in b.items() if a.get(k) != v})

    # --- 3. changes on both sides -------------------------------------------------------
    local = read_local(root)
    model = {box: {mid: m.flags for mid, m in msgs.items()} for box, msgs in local.items()}
    bodies = {mid: m.data for msgs in local.values() for mid, m in msgs.items()}

    inbox = sorted(model["INBOX"])
    srv_touch, loc_touch = inbox[:60], inbox[60:120]
    archive = sorted(model["Archive"])

    # local: flag changes by renaming, deletions by removing, a trashed (T) message
    for i, mid in enumerate(loc_touch[:30]):
        flags = set(model["INBOX"][mid])
        flags ^= {"\\flagged"} if i % 2 else {"\\seen"}
        if i % 5 == 0:
            flags.add("\\answered")
        set_local_flags(local["INBOX"][mid].path, letters_of(flags))
        model["INBOX"][mid] = frozenset(flags)
    for mid in loc_touch[30:40]:
        os.unlink(local["INBOX"][mid].path)
        del model["INBOX"][mid]
    for mid in archive[:5]:
        os.unlink(local["Archive"][mid].path)
        del model["Archive"][mid]
    trashed = loc_touch[40]
    set_local_flags(local["INBOX"][trashed].path,
                    letters_of(model["INBOX"][trashed] | {"\\deleted"}))
    del model["INBOX"][trashed]                   # Expunge Both removes it everywhere
    for box, n in (("INBOX", 7), ("Projects", 3), (NONASCII_WIRE, 2)):
        for i in range(n):
            mid = f"<local-new-{box.replace('/', '.').replace('&', '_')}-{i}@local.test>"
            data = make_message(rng, mid, rng.randrange(300, 30000), f"new local {i}")
            letters = ["", "S", "FS"][i % 3]
            deliver_local(os.path.join(root, box), data, letters)
            model[box][mid] = frozenset(LETTER_FLAG[c].lower() for c in letters)
            bodies[mid] = data

    # server: STORE, EXPUNGE and APPEND over imaplib
    new_remote = {"INBOX": 6, "Lists/python": 4, "Archive": 2}

    def server_changes():
        c = connect(ctx)
        srv = read_server(c)
        c.select("INBOX")
        for i, mid in enumerate(srv_touch[:30]):
            uid = str(srv["INBOX"][mid].uid)
            if i % 3 == 0:
                c.uid("STORE", uid, "+FLAGS.SILENT", r"(\Flagged)")
                model["INBOX"][mid] = model["INBOX"][mid] | {"\\flagged"}
            elif i % 3 == 1:
                c.uid("STORE", uid, "-FLAGS.SILENT", r"(\Seen)")
                model["INBOX"][mid] = model["INBOX"][mid] - {"\\seen"}
            else:
                c.uid("STORE", uid, "FLAGS.SILENT", r"(\Answered \Seen)")
                model["INBOX"][mid] = frozenset({"\\answered", "\\seen"})
        gone = srv_touch[30:42]
        uids = ",".join(str(srv["INBOX"][mid].uid) for mid in gone)
        typ, data = c.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")
        assert typ == "OK", data
        typ, data = c.expunge()
        assert typ == "OK" and len([d for d in data if d]) == len(gone), data
        for mid in gone:
            del model["INBOX"][mid]
        c.close()
        c.select("Archive")
        uids = ",".join(str(srv["Archive"][mid].uid) for mid in archive[10:14])
        c.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")
        c.expunge()
        for mid in archive[10:14]:
            del model["Archive"][mid]
        c.close()
        for box, n in new_remote.items():
            for i in range(n):
                mid = f"<remote-new-{box.replace('/', '.')}-{i}@server.test>"
                data = make_message(rng, mid, rng.randrange(300, 50000), f"new remote {i}")
                flags = ["", r"(\Seen)", r"(\Seen \Flagged)"][i % 3]
                typ, resp = c.append(_q(box), flags or None, None, crlf(data))
                assert typ == "OK", resp
                model[box][mid] = frozenset(f.lower() for f in flags.strip("()").split())
                bodies[mid] = data
        c.logout()

    await run(server_changes)

    # --- 4. sync both ways, then both sides must be identical (and match the model) -----
    p = await mbsync(rc)
    local = read_local(root)

    def server_state():
        c = connect(ctx)
        try:
            return read_server(c)
        finally:
            c.logout()

    srv = await run(server_state)
    assert flagview(local) == model, p.stdout + p.stderr
    # the server may hold extra, empty parents (Lists) that mbsync mirrors locally
    assert set(srv) == set(local)
    assert flagview(srv) == flagview(local)
    for box, msgs in srv.items():
        for mid, m in msgs.items():
            assert sans_tuid(m.data) == crlf(sans_tuid(local[box][mid].data)), (box, mid)
            assert sans_tuid(local[box][mid].data) == bodies[mid], (box, mid)

    # --- 5. and once more: nothing to do, nothing changes ------------------------------
    before_local, before_srv = local_listing(root), await run(modseqs)
    await mbsync(rc)
    assert await run(modseqs) == before_srv
    assert mail(local_listing(root)) == mail(before_local)


async def test_mbsync_imaps_and_certificate_check(imap_server, tmp_path):
    """Implicit TLS with the server's CA works; with a foreign CA mbsync refuses."""
    ctx = imap_server

    def seed():
        c = connect(ctx, "bob")
        for i in range(3):
            c.append("INBOX", r"(\Seen)" if i else None, None,
                     crlf(make_message(random.Random(i), f"<tls{i}@test>", 500, f"tls {i}")))
        c.logout()
    await run(seed)

    good = tmp_path / "good"
    good.mkdir()
    rc = write_rc(good, ctx, tls="IMAPS", user="bob")
    await mbsync(rc)
    local = read_local(str(good / "Mail"))
    assert {mid: m.flags for mid, m in local["INBOX"].items()} == {
        "<tls0@test>": frozenset(), "<tls1@test>": {"\\seen"}, "<tls2@test>": {"\\seen"}}

    import trustme
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    for tls in ("IMAPS", "STARTTLS"):
        bad = tmp_path / f"bad-{tls}"
        bad.mkdir()
        rc = write_rc(bad, ctx, tls=tls, user="bob", cafile=str(other_ca))
        p = await mbsync(rc, check=False)
        assert p.returncode != 0, p.stdout + p.stderr
        assert re.search(r"certificate", p.stderr, re.I), p.stderr
        assert not read_local(str(bad / "Mail")).get("INBOX")


async def test_mbsync_keeps_forwarded_flag(imap_server, tmp_path):
    """Maildir P <-> IMAP $Forwarded must survive a round trip and a no-op sync."""
    ctx = imap_server
    root = str(tmp_path / "Mail")
    mid = "<forwarded@local.test>"
    path = deliver_local(os.path.join(root, "INBOX"),
                         make_message(random.Random(1), mid, 500, "forwarded"), "PS")
    rc = write_rc(tmp_path, ctx, user="bob")
    await mbsync(rc)

    def fetch_flags():
        c = connect(ctx, "bob")
        try:
            return read_server(c)["INBOX"][mid].flags
        finally:
            c.logout()
    # the server has the keyword (compared case-insensitively: this part passes) ...
    assert await run(fetch_flags) == {"$forwarded", "\\seen"}
    # ... and sends it back as "$Forwarded", the spelling mbsync stored, so a
    # second sync with nothing changed keeps P in the Maildir
    await mbsync(rc)
    (name,) = os.listdir(os.path.join(root, "INBOX", "cur"))
    assert maildir_flags(name) == {"$forwarded", "\\seen"}, (path, name)
