"""``mailaccess export``: one account to a Maildir++ tree Dovecot (and our
importer) reads back.

Layout
    * INBOX is the root (``cur/ new/ tmp/``); every other mailbox is
      ``.Name.Sub`` with each level in modified UTF-7, as Dovecot writes it.
      "." and "/" inside a name cannot be a Maildir++ level, so they are
      base64-encoded too (``&AC4-``, ``&AC8-``); decoders read them back.
    * One file per message per mailbox in ``cur/``:
      ``<received_at>.<eid>_<uid>.mailaccess,S=<size>:2,<flags>`` with the
      standard letters (D F P R S T) then the mailbox's keyword letters (a-z,
      named in that folder's ``dovecot-keywords``), mtime = INTERNALDATE.
    * ``subscriptions`` at the root lists the subscribed mailboxes (Dovecot's
      version-1 form: one name per line, "." between levels).

Every file is written to ``tmp/``, fsynced and renamed into ``cur/`` (the
Maildir delivery protocol), so a reader never sees half a message.  The
account is read in short snapshots (a chunk of messages each) so a long
export never pins old LMDB pages; a message expunged meanwhile is skipped.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .importer import mutf7_encode
from .store.errors import NotFound
from .vocab import KEYWORD_TO_MAILDIR_LETTER as FLAG_LETTERS, ROLE_INBOX

__all__ = ["ExportSummary", "export_account", "folder_dir_name"]

CHUNK = 256          # messages read per snapshot
MAX_KEYWORDS = 26    # Maildir keyword letters a-z per mailbox


@dataclass
class ExportSummary:
    mailboxes: int = 0
    messages: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.elapsed if self.elapsed > 0 else 0.0

    def __str__(self) -> str:
        s = (f"exported {self.messages} messages ({self.bytes / 1e6:.1f} MB) from "
             f"{self.mailboxes} mailboxes in {self.elapsed:.1f}s, {self.rate:.0f} msg/s")
        for w in self.warnings[:20]:
            s += f"\n  warning: {w}"
        return s


def folder_dir_name(path: list[str]) -> str:
    """Maildir++ directory of a non-INBOX mailbox path: ``.A.B``."""
    return "." + ".".join(mutf7_encode(p, force="./") for p in path)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _make_maildir(d: str) -> None:
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)


def _write_atomic(tmp_path: str, final_path: str, data: bytes, mtime: int, fsync: bool) -> None:
    fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.utime(tmp_path, (mtime, mtime))
    os.replace(tmp_path, final_path)


def _write_small(path: str, text: str, fsync: bool) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)


def export_account(store, account_name: str, dest_dir: str | os.PathLike, progress=None, *,
                   fsync: bool = True, workers: int = 8) -> ExportSummary:
    """Write ACCOUNT_NAME's mailboxes to DEST_DIR as a Maildir++ tree."""
    t0 = time.monotonic()
    dest = os.fspath(dest_dir)
    summary = ExportSummary()
    with store.view() as v:
        account = v.account_by_name(account_name)
        if account is None:
            raise NotFound(f"no account {account_name!r}")
        acc = account.id
        boxes = []
        for m in v.mailboxes(acc):
            path = v.mailbox_path(acc, m.id)
            boxes.append((m, path))
        total = sum(m.total for m, _ in boxes)
    if progress is not None:
        progress.set_total(total)
    if os.path.isdir(dest) and os.listdir(dest):
        raise FileExistsError(f"{dest} is not empty: export into a new directory")
    os.makedirs(dest, exist_ok=True)
    _make_maildir(dest)
    boxes.sort(key=lambda b: (b[0].role != ROLE_INBOX, b[1]))
    subscribed: list[str] = []
    dirs: list[str] = []
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="export")
    try:
        for m, path in boxes:
            if m.role == ROLE_INBOX and m.parent == 0:
                fdir = dest
                listed = "INBOX"
            else:
                name = folder_dir_name(path)
                fdir = os.path.join(dest, name)
                listed = name[1:]
                _make_maildir(fdir)
            dirs.append(fdir)
            if m.subscribed:
                subscribed.append(listed)
            summary.mailboxes += 1
            _export_mailbox(store, acc, m.id, path, fdir, pool, summary, progress, fsync)
        if fsync:
            for d in dirs:
                _fsync_dir(os.path.join(d, "cur"))
        _write_small(os.path.join(dest, "subscriptions"),
                     "".join(s + "\n" for s in subscribed), fsync)
        if fsync:
            _fsync_dir(dest)
    finally:
        pool.shutdown(wait=True)
        if progress is not None:
            progress.close()
    summary.elapsed = time.monotonic() - t0
    return summary


def _export_mailbox(store, acc: int, mbx: int, path: list[str], fdir: str, pool,
                    summary: ExportSummary, progress, fsync: bool) -> None:
    with store.view() as v:
        uids = v.uids(acc, mbx)
    kw_letters: dict[str, str] = {}
    futures = []
    for i in range(0, len(uids), CHUNK):
        chunk = uids[i:i + CHUNK]
        jobs = []
        with store.view() as v:
            for uid, eid in chunk:
                rec = v.email(acc, eid)
                if rec is None or rec.member(mbx) is None:
                    continue   # expunged since the listing
                raw = v.blob(acc, rec.blob)
                if raw is None:
                    summary.warnings.append(f"{'/'.join(path)} UID {uid}: message blob missing")
                    continue
                letters = []
                custom = []
                for kw in rec.keywords:
                    if kw in FLAG_LETTERS:
                        letters.append(FLAG_LETTERS[kw])
                        continue
                    ch = kw_letters.get(kw)
                    if ch is None:
                        if len(kw_letters) >= MAX_KEYWORDS:
                            summary.warnings.append(
                                f"{'/'.join(path)} UID {uid}: keyword {kw!r} dropped "
                                f"(Maildir holds {MAX_KEYWORDS} keywords per mailbox)")
                            continue
                        ch = chr(ord("a") + len(kw_letters))
                        kw_letters[kw] = ch
                    custom.append(ch)
                flags = "".join(sorted(letters)) + "".join(sorted(custom))
                name = (f"{rec.received_at}.{eid}_{uid}.mailaccess,S={rec.size}:2,{flags}")
                jobs.append((name, bytes(raw), rec.received_at))
        for name, data, when in jobs:
            futures.append(pool.submit(
                _write_atomic, os.path.join(fdir, "tmp", name.split(":", 1)[0]),
                os.path.join(fdir, "cur", name), data, when, fsync))
            summary.messages += 1
            summary.bytes += len(data)
        # bound the memory held by queued writes
        while len(futures) > 4 * CHUNK:
            futures.pop(0).result()
        if progress is not None:
            progress.update(len(jobs), sum(len(d) for _, d, _ in jobs))
    for f in futures:
        f.result()
    kw_file = os.path.join(fdir, "dovecot-keywords")
    if kw_letters:
        _write_small(kw_file, "".join(f"{ord(ch) - ord('a')} {kw}\n"
                                      for kw, ch in kw_letters.items()), fsync)
    elif os.path.exists(kw_file):
        os.unlink(kw_file)
