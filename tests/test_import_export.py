"""Import (Maildir, Maildir++, mbox), export (Maildir++) and their round trip,
over a real LMDB store in a temp dir, with mail generated here."""
import io
import os

import pytest

from mailaccess import importer
from mailaccess.check import check_store
from mailaccess.importer import import_path, iter_mbox, mutf7_decode, mutf7_encode
from mailaccess.exporter import export_account
from mailaccess.progress import Progress
from mailaccess.store import Store, ops

T0 = 1_600_000_000


def msg(i: int, subject: str = "hello", body: str = "", eol: bytes = b"\n",
        extra: bytes = b"") -> bytes:
    lines = [
        b"From: Sender %d <s%d@example.com>" % (i, i),
        b"To: alice@example.com",
        b"Subject: " + subject.encode() + b" %d" % i,
        b"Message-ID: <m%d.%s@example.com>" % (i, subject.encode().replace(b" ", b"_")),
        b"Date: Sun, 13 Sep 2020 12:26:40 +0000",
    ]
    if extra:
        lines.append(extra)
    lines += [b"", b"Body of message %d." % i, (body or "line two").encode(), b""]
    return eol.join(lines)


def put_maildir_msg(folder: str, i: int, raw: bytes, flags: str | None, when: int,
                    new: bool = False) -> str:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    base = f"{when}.M{i}P1Q{i}.testhost,S={len(raw)}"
    name = base if new or flags is None else f"{base}:2,{flags}"
    p = os.path.join(folder, "new" if new else "cur", name)
    with open(p, "wb") as f:
        f.write(raw)
    os.utime(p, (when, when))
    return p


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "data")
    s.start()
    s.write_sync(ops.create_account, "alice", "x")
    s.write_sync(ops.create_account, "bob", "x")
    yield s
    s.close()


def dump(store, name):
    """{mailbox path: [(raw, keywords, received_at)] in UID order}"""
    out = {}
    with store.view() as v:
        acc = v.account_by_name(name).id
        for m in v.mailboxes(acc):
            rows = []
            for uid, eid in v.uids(acc, m.id):
                rec = v.email(acc, eid)
                rows.append((bytes(v.blob(acc, rec.blob)), tuple(sorted(rec.keywords)),
                             rec.received_at))
            out["/".join(v.mailbox_path(acc, m.id))] = rows
    return out


def subscribed(store, name):
    with store.view() as v:
        acc = v.account_by_name(name).id
        return {"/".join(v.mailbox_path(acc, m.id)): m.subscribed for m in v.mailboxes(acc)}


def make_maildirpp(root: str, n_inbox: int = 120) -> dict:
    """A Dovecot-style Maildir++ tree; -> {mailbox path: [(raw, flags, when)]}"""
    expect = {}
    rows = []
    for i in range(n_inbox):
        raw = msg(i, "inbox")
        flags = ["", "S", "RS", "FS", "DT", "PS", "Sa", "Sab"][i % 8]
        new = i % 10 == 9
        put_maildir_msg(root, i, raw, flags, T0 + i, new=new)
        kws = set()
        if not new:
            kws = {importer.LETTER_FLAGS[c] for c in flags if c.isupper()}
            kws |= {{"a": "$label1", "b": "project-x"}[c] for c in flags if c.islower()}
        rows.append((raw.replace(b"\n", b"\r\n"), tuple(sorted(kws)), T0 + i))
    with open(os.path.join(root, "dovecot-keywords"), "w") as f:
        f.write("0 $label1\n1 Project-X\n")
    expect["INBOX"] = rows
    folders = {".Sent": "Sent", ".Work": "Work", ".Work.Projects": "Work/Projects",
               ".Caf&AOk-": "Café", ".Caf&AOk-.&ZeVnLIqe-": "Café/日本語",
               ".Spam": "Junk"}
    for k, (d, path) in enumerate(folders.items()):
        rows = []
        for j in range(15):
            i = 1000 * (k + 1) + j
            raw = msg(i, path)
            put_maildir_msg(os.path.join(root, d), i, raw, "S", T0 + i)
            rows.append((raw.replace(b"\n", b"\r\n"), ("$seen",), T0 + i))
        expect[path] = rows
    with open(os.path.join(root, "subscriptions"), "w") as f:
        f.write("Sent\nWork\nCaf&AOk-\nCaf&AOk-.&ZeVnLIqe-\n")   # Work.Projects is not
    return expect


# --- modified UTF-7 ----------------------------------------------------------------

@pytest.mark.parametrize("name,enc", [
    ("INBOX", "INBOX"), ("Café", "Caf&AOk-"), ("日本語", "&ZeVnLIqe-"), ("a&b", "a&-b"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"), ("😀 x", "&2D3eAA- x"),
])
def test_mutf7_round_trip(name, enc):
    assert mutf7_encode(name) == enc
    assert mutf7_decode(enc) == name


def test_mutf7_forced_characters():
    assert mutf7_encode("a.b/c", force="./") == "a&AC4-b&AC8-c"
    assert mutf7_decode("a&AC4-b&AC8-c") == "a.b/c"
    assert mutf7_decode("bad&-?&") == "bad&?&"


# --- Maildir ---------------------------------------------------------------------------

def test_import_maildirpp_tree(store, tmp_path):
    root = str(tmp_path / "Maildir")
    expect = make_maildirpp(root)
    s = import_path(store, "alice", root)
    n = sum(len(v) for v in expect.values())
    assert (s.imported, s.skipped, s.failed) == (n, 0, [])
    assert s.source_format == "maildir"
    # Work, Work/Projects, Café, Café/日本語 created; Sent and Spam->Junk existed
    assert s.mailboxes_created == 4
    assert s.bytes == sum(len(r[0]) for rows in expect.values() for r in rows)
    got = dump(store, "alice")
    for path, rows in expect.items():
        assert got[path] == rows, path
    assert got["Drafts"] == [] and got["Trash"] == []
    subs = subscribed(store, "alice")
    assert subs["Work"] and subs["Café"] and subs["Café/日本語"]
    assert subs["Work/Projects"] is False
    assert check_store(store) == []


def test_import_plain_maildir_into(store, tmp_path):
    root = str(tmp_path / "md")
    for i in range(20):
        put_maildir_msg(root, i, msg(i, eol=b"\r\n"), "S", T0 + i)
    s = import_path(store, "alice", root, into=["Old", "Mail"])
    assert s.imported == 20 and s.mailboxes_created == 2
    got = dump(store, "alice")
    assert [r[0] for r in got["Old/Mail"]] == [msg(i, eol=b"\r\n") for i in range(20)]
    assert got["INBOX"] == []


def test_import_resume_after_interruption(store, tmp_path, monkeypatch):
    root = str(tmp_path / "Maildir")
    expect = make_maildirpp(root, n_inbox=200)
    total = sum(len(v) for v in expect.values())
    real = importer._load
    seen = []

    def flaky(item):
        seen.append(1)
        if len(seen) > 150:
            raise KeyboardInterrupt
        return real(item)

    monkeypatch.setattr(importer, "_load", flaky)
    with pytest.raises(KeyboardInterrupt):
        import_path(store, "alice", root, batch=16)
    monkeypatch.setattr(importer, "_load", real)
    with store.view() as v:
        acc = v.account_by_name("alice").id
        first = sum(1 for _ in v.emails(acc))
    assert 0 < first < total
    s = import_path(store, "alice", root, batch=16)
    assert s.skipped == first and s.imported == total - first and not s.failed
    assert dump(store, "alice")["INBOX"] == expect["INBOX"]
    # a third run finds everything done
    s = import_path(store, "alice", root)
    assert (s.imported, s.skipped) == (0, total)
    assert check_store(store) == []


def test_resume_finds_commits_the_journal_missed(store, tmp_path):
    """A batch durable in the store whose journal lines were lost (crash
    between commit and journal fsync) is not imported twice."""
    root = str(tmp_path / "md")
    for i in range(40):
        put_maildir_msg(root, i, msg(i), "S", T0 + i)
    # one legitimate duplicate in the source: both copies must survive
    put_maildir_msg(root, 99, msg(5), "S", T0 + 99)
    s = import_path(store, "alice", root)
    assert s.imported == 41
    with open(s.journal, "rb") as f:
        lines = f.readlines()
    with open(s.journal, "wb") as f:
        f.writelines(lines[:10])        # the last 31 journal lines were lost
        f.write(lines[10][:5])          # and a torn line
    s2 = import_path(store, "alice", root)
    assert (s2.imported, s2.skipped, s2.failed) == (0, 41, [])
    assert len(dump(store, "alice")["INBOX"]) == 41
    # resume=False starts over: everything again
    s3 = import_path(store, "alice", root, resume=False)
    assert s3.imported == 41
    assert len(dump(store, "alice")["INBOX"]) == 82


def test_new_duplicates_after_resume_are_kept(store, tmp_path):
    root = str(tmp_path / "md")
    for i in range(10):
        put_maildir_msg(root, i, msg(i), "S", T0 + i)
    assert import_path(store, "alice", root).imported == 10
    # two identical new messages arrive in the source before the next run
    put_maildir_msg(root, 20, msg(20), "S", T0 + 20)
    put_maildir_msg(root, 21, msg(20), "S", T0 + 21)
    s = import_path(store, "alice", root)
    assert (s.imported, s.skipped) == (2, 10)
    assert len(dump(store, "alice")["INBOX"]) == 12


def test_failures_are_reported_not_fatal(store, tmp_path, monkeypatch):
    root = str(tmp_path / "md")
    for i in range(30):
        put_maildir_msg(root, i, msg(i), "", T0 + i)
    bad = put_maildir_msg(root, 7, b"", "", T0 + 7)    # empty file
    s = import_path(store, "alice", root)
    assert s.imported == 30
    assert len(s.failed) == 1 and "empty" in s.failed[0][1]
    assert os.path.basename(bad).split(":")[0] in s.failed[0][0]
    # the failed one is retried by the next run (it is not in the journal)
    with open(bad, "wb") as f:
        f.write(msg(7, "fixed"))
    s = import_path(store, "alice", root)
    assert (s.imported, s.skipped) == (1, 30)


def test_over_quota_fails_per_message(store, tmp_path):
    with store.view() as v:
        acc = v.account_by_name("alice").id
    one = len(msg(0).replace(b"\n", b"\r\n"))
    store.write_sync(ops.set_quota, acc, one * 10 + 5)
    root = str(tmp_path / "md")
    for i in range(15):
        put_maildir_msg(root, i, msg(i), "", T0 + i)
    s = import_path(store, "alice", root)
    assert s.imported == 10 and len(s.failed) == 5
    assert all("OverQuota" in r for _, r in s.failed)
    assert check_store(store) == []


# --- mbox --------------------------------------------------------------------------------

MBOX = (
    b"From alice@example.com Thu Nov 14 22:13:01 2023\n"
    + msg(1, "first", extra=b"Status: RO\nX-Status: AF\nX-Keywords: $Label1 todo").rstrip(b"\n")
    + b"\n>From the past, quoted\n>>From deeper\n\n"
    b"From bob@example.com Fri Nov 15 08:00:00 2023 +0200\n"
    + msg(2, "second", extra=b"Status: O").rstrip(b"\n") + b"\nFrom inside a body (mboxo)\n\n"
    b"From carol@example.com  Sat Nov 16 09:30:00 2023\n"
    + msg(3, "third", extra=b"X-Mozilla-Status: 0003") + b"\n"
)


def test_iter_mbox_splits_and_unquotes(tmp_path):
    p = tmp_path / "box"
    p.write_bytes(MBOX)
    got = list(iter_mbox(str(p)))
    assert len(got) == 3
    assert got[0][0] == 0 and got[0][1].startswith(b"From alice")
    assert b"\nFrom the past, quoted\n>From deeper\n" in got[0][2]
    assert got[0][2].endswith(b">From deeper\n")
    assert b"\nFrom inside a body (mboxo)\n" in got[1][2]
    mboxo = list(iter_mbox(str(p), "mboxo"))
    assert b"\nFrom the past, quoted\n>>From deeper\n" in mboxo[0][2]
    assert importer._from_line_time(got[0][1]) == 1699999981
    assert importer._from_line_time(got[1][1]) == 1700028000
    assert importer._from_line_time(got[2][1]) == 1700127000


def test_import_mbox_file(store, tmp_path):
    p = tmp_path / "inbox.mbox"
    p.write_bytes(MBOX)
    s = import_path(store, "alice", p)
    assert s.source_format == "mbox" and s.imported == 3 and not s.failed
    rows = dump(store, "alice")["INBOX"]
    assert [r[1] for r in rows] == [("$answered", "$flagged", "$label1", "$seen", "todo"), (),
                                    ("$answered", "$seen")]
    assert [r[2] for r in rows] == [1699999981, 1700028000, 1700127000]
    first = rows[0][0]
    assert b"Status:" not in first and b"X-Keywords" not in first
    assert first.endswith(b"\r\nFrom the past, quoted\r\n>From deeper\r\n")
    assert b"\n" not in first.replace(b"\r\n", b"")
    assert b"X-Mozilla-Status: 0003" in rows[2][0]
    # mbox resume: offsets identify messages
    s = import_path(store, "alice", p)
    assert (s.imported, s.skipped) == (0, 3)


def test_import_mbox_directory(store, tmp_path):
    d = tmp_path / "mail"
    (d / "Lists.sbd").mkdir(parents=True)
    (d / "Lists.sbd" / "python").write_bytes(MBOX)
    (d / "Lists").write_bytes(MBOX[:MBOX.index(b"From bob")])
    (d / "Sent Items.mbox").write_bytes(MBOX)
    (d / "Lists.msf").write_bytes(b"// mork index, not mail")
    (d / "Inbox").write_bytes(MBOX)
    s = import_path(store, "alice", d)
    assert s.imported == 10 and not s.failed
    got = dump(store, "alice")
    assert len(got["INBOX"]) == 3 and len(got["Sent"]) == 3
    assert len(got["Lists"]) == 1 and len(got["Lists/python"]) == 3
    assert "Lists.msf" not in got
    assert check_store(store) == []


def test_progress_output(store, tmp_path):
    root = str(tmp_path / "md")
    for i in range(50):
        put_maildir_msg(root, i, msg(i), "S", T0 + i)
    out = io.StringIO()
    s = import_path(store, "alice", root, progress=Progress(label="import", stream=out,
                                                             interval=0))
    assert s.imported == 50
    text = out.getvalue()
    assert "50/50 msg" in text and "MB" in text and "msg/s" in text


def test_progress_tty_redraws_in_place():
    out = io.StringIO()
    p = Progress("exporting", 4, stream=out, tty=True)
    p.interval = 0
    for _ in range(4):
        p.update(1, 500_000)
    p.close()
    text = out.getvalue()
    assert text.count("\r") == 5 and text.endswith("\n") and "\n" not in text[:-1]
    assert "[########################] exporting  4/4 msg (100.0%)  2.0 MB" in text
    q = Progress(total_bytes=1000, stream=io.StringIO(), tty=False)
    q.update(1, 250)
    assert "0.0/0.0 MB" in q.render() and "ETA" in q.render()


# --- export and round trip -------------------------------------------------------------------

def test_export_layout(store, tmp_path):
    with store.view() as v:
        acc = v.account_by_name("alice").id
        inbox = v.mailbox_by_role(acc, "inbox").id
    sub = store.write_sync(ops.create_mailbox_path, acc, ["Café", "a.b"])
    # CREATE subscribes nothing (RFC 3501 6.3.3): subscribe the parent only
    with store.view() as v:
        cafe = v.mailbox_by_path(acc, ["Café"]).id
    store.write_sync(ops.update_mailbox, acc, cafe, subscribed=True)
    from mailaccess import ingest
    raw = msg(1, eol=b"\r\n")
    r = store.write_sync(ops.append, acc, [inbox, sub], ingest.prepare(raw, T0, 0),
                         ["$seen", "$flagged", "Custom", "$forwarded", "$deleted"])
    dest = tmp_path / "out"
    s = export_account(store, "alice", dest)
    assert s.messages == 2 and s.mailboxes == 8
    inbox_files = os.listdir(dest / "cur")
    assert inbox_files == [f"{T0}.{r.email}_1.mailaccess,S={len(raw)}:2,FPSTa"]
    f = dest / "cur" / inbox_files[0]
    assert f.read_bytes() == raw and int(f.stat().st_mtime) == T0
    assert (dest / "dovecot-keywords").read_text() == "0 custom\n"
    assert os.path.isdir(dest / ".Caf&AOk-.a&AC4-b" / "cur")
    assert os.listdir(dest / ".Caf&AOk-.a&AC4-b" / "tmp") == []
    subs = (dest / "subscriptions").read_text().splitlines()
    assert "INBOX" in subs and "Caf&AOk-" in subs and "Caf&AOk-.a&AC4-b" not in subs
    with pytest.raises(FileExistsError):
        export_account(store, "alice", dest)


def test_round_trip(store, tmp_path):
    root = str(tmp_path / "Maildir")
    make_maildirpp(root)
    with store.view() as v:
        acc = v.account_by_name("alice").id
        arch = v.mailbox_by_role(acc, "archive").id
        inbox = v.mailbox_by_role(acc, "inbox").id
    import_path(store, "alice", root)
    # an email in two mailboxes, a keyword set after import, a name with "."
    with store.view() as v:
        eid = v.uids(acc, inbox)[3][1]
    store.write_sync(ops.copy, acc, [eid], arch)
    store.write_sync(ops.set_keywords, acc, [eid], add=["$junk", "$flagged"])
    dot = store.write_sync(ops.create_mailbox_path, acc, ["v1.2 notes"])
    store.write_sync(ops.copy, acc, [eid], dot)
    before = dump(store, "alice")
    dest = tmp_path / "export"
    s = export_account(store, "alice", dest, fsync=False)
    assert s.messages == sum(len(r) for r in before.values())
    s2 = import_path(store, "bob", dest)
    assert not s2.failed and s2.imported == s.messages
    after = dump(store, "bob")
    assert after == before
    subs_a, subs_b = subscribed(store, "alice"), subscribed(store, "bob")
    assert subs_a == subs_b
    assert check_store(store) == []
