"""ActiveSync FolderCreate, FolderDelete and FolderUpdate (MS-ASCMD 2.2.1.3,
2.2.1.4, 2.2.1.6): the device changes the folder hierarchy.

Folders are the store's mailboxes, changed through ``ops.create_mailbox`` /
``ops.rename_mailbox`` / ``ops.delete_mailbox`` (the ops IMAP CREATE,
RENAME and DELETE use), so IMAP, JMAP and other devices see the change.

SyncKey is the device's FolderSync key (server/eas_foldersync.py, device
state ``fs``): only its current key is accepted (anything else: Status 9).
The change and the device's new FolderSync state are written in one
transaction: the device's snapshot takes its own change under a new key
(``eas_foldersync.after_own_change``), so its next FolderSync does not
report that change back, while changes made meanwhile by others still come.

Rules and statuses (MS-ASCMD 2.2.3.177.3, .4, .6):
- FolderCreate Type 12 (user mail folder) and 1 (user generic folder: a
  mail folder here) create a mail folder; any other type is Status 3 (the
  server keeps only mail: 2.2.3.177.3 "create a folder with a different
  type").  ParentId ``0`` is the top level.  2 a folder of that name exists
  under the parent, 5 the parent does not exist.
- Special-use folders (any with a role: Inbox, Drafts, Sent, Trash, Junk,
  Archive, ...) cannot be renamed, moved (FolderUpdate Status 2, "the
  specified folder is a special folder") or deleted (FolderDelete Status 3).
- FolderDelete removes the folder's subfolders with it (as Exchange does;
  the device drops the subtree); it is refused (3) when one of them is
  special.  Emails only in the deleted folders are destroyed, as IMAP
  DELETE does.
- 4 the folder does not exist; 10 a malformed request (a missing element,
  a name the store cannot hold: empty, a ``/`` (the IMAP hierarchy
  separator), control characters, too long); 6 the store failed.
"""
from __future__ import annotations

import logging

from .. import ids, storeio, vocab
from ..proto.eas.wbxml import E, Element
from ..store import ops
from ..store.errors import AlreadyExists, Conflict, InvalidName, NotFound, StoreError
from . import eas_foldersync as fsync
from .eas_command import Command

log = logging.getLogger("mailaccess.eas")

OK = 1
EXISTS = 2
SPECIAL = 3
NOT_FOUND = 4
PARENT_NOT_FOUND = 5
SERVER_ERROR = 6
BAD_SYNC_KEY = 9
BAD_REQUEST = 10

MAIL_TYPES = (1, 12)    # FolderCreate Type: user-created generic, user-created mail


class _Refused(Exception):
    def __init__(self, status: int):
        self.status = status


def _answer(root: str, status: int, key: int | None = None, server_id: str | None = None):
    kids = [E("FolderHierarchy:Status", text=str(status))]
    if key is not None:
        kids.append(E("FolderHierarchy:SyncKey", text=str(key)))
    if server_id is not None:
        kids.append(E("FolderHierarchy:ServerId", text=server_id))
    return E(f"FolderHierarchy:{root}", *kids)


def _check_name(name: str | None) -> str:
    if not name or "/" in name or len(name.encode("utf-8")) > vocab.MAX_MAILBOX_LEVEL_BYTES \
            or any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise _Refused(BAD_REQUEST)
    return name


def _parent_id(s: str | None) -> int:
    """ParentId -> mailbox id (0: the top level)."""
    if s is None:
        raise _Refused(BAD_REQUEST)
    if s == "0":
        return 0
    p = ids.parse("M", s)
    if p is None:
        raise _Refused(PARENT_NOT_FOUND)
    return p


def _state(ctx, body: Element) -> dict:
    """The device's FolderSync state, when the request's SyncKey is its current key."""
    key = body.child_text("FolderHierarchy:SyncKey")
    if key is None:
        raise _Refused(BAD_REQUEST)
    with ctx.store.view() as v:
        st = fsync.load_state(v, ctx.account, ctx.req.device_id)
    if not key.isdigit() or len(key) > 12 or int(key) == 0 or "snap" not in st \
            or int(key) != st.get("key"):
        raise _Refused(BAD_SYNC_KEY)
    return st


def _entry(tx, acc: int, mbx: int) -> list:
    m = tx.require_mailbox(acc, mbx)
    parent = ids.mailbox_id(m.parent) if m.parent else "0"
    return [parent, m.name, vocab.activesync_folder_type(m.role)]


async def _write(ctx, fn, *args):
    """FN(tx, acc, *args) -> (changes, result); the device's FolderSync state
    moves on in the same transaction.  -> (new key, result)."""
    dev = ctx.req.device_id

    def go(tx, acc, st, *a):
        changes, result = fn(tx, acc, *a)
        key, raw = fsync.after_own_change(st, changes)
        ops.put_device_state(tx, acc, dev, fsync.STATE_KEY, raw)
        return key, result
    return await storeio.write(ctx.store, go, ctx.account, *args)


async def _guarded(ctx, root: str, body: Element | None, handler):
    if body is None or body.qname != f"FolderHierarchy:{root}":
        return _answer(root, BAD_REQUEST)
    try:
        return await handler(ctx, body)
    except _Refused as r:
        return _answer(root, r.status)
    except StoreError as exc:
        log.warning("EAS %s for %s failed: %s", root, ctx.username, exc)
        return _answer(root, SERVER_ERROR)


# --- FolderCreate ---------------------------------------------------------------------------

def _create(tx, acc: int, parent: int, name: str):
    if parent and tx.mailbox(acc, parent) is None:
        raise _Refused(PARENT_NOT_FOUND)
    if tx.child_id(acc, parent, name) is not None:
        raise _Refused(EXISTS)
    try:
        mbx = ops.create_mailbox(tx, acc, parent, name)
    except AlreadyExists:
        raise _Refused(EXISTS) from None
    except InvalidName:
        raise _Refused(BAD_REQUEST) from None
    sid = ids.mailbox_id(mbx)
    return {sid: _entry(tx, acc, mbx)}, sid


async def _folder_create(ctx, body: Element):
    st = _state(ctx, body)
    parent = _parent_id(body.child_text("FolderHierarchy:ParentId"))
    name = _check_name(body.child_text("FolderHierarchy:DisplayName"))
    t = body.child_text("FolderHierarchy:Type")
    if t is None or not t.isdigit() or len(t) > 3:
        raise _Refused(BAD_REQUEST)
    if int(t) not in MAIL_TYPES:
        raise _Refused(SPECIAL)
    key, sid = await _write(ctx, _create, st, parent, name)
    return _answer("FolderCreate", OK, key, sid)


async def folder_create(ctx, body):
    return await _guarded(ctx, "FolderCreate", body, _folder_create)


# --- FolderUpdate ---------------------------------------------------------------------------

def _update(tx, acc: int, mbx: int, parent: int, name: str):
    m = tx.mailbox(acc, mbx)
    if m is None:
        raise _Refused(NOT_FOUND)
    if m.role is not None:
        raise _Refused(EXISTS)          # 2.2.3.177.6: 2 is also "a special folder"
    if parent and tx.mailbox(acc, parent) is None:
        raise _Refused(PARENT_NOT_FOUND)
    if (parent, name) != (m.parent, m.name):
        existing = tx.child_id(acc, parent, name)
        if existing is not None:
            raise _Refused(EXISTS)
        try:
            ops.rename_mailbox(tx, acc, mbx, parent, name)
        except AlreadyExists:
            raise _Refused(EXISTS) from None
        except InvalidName:
            raise _Refused(BAD_REQUEST) from None
        except Conflict:                # under itself or one of its children
            raise _Refused(PARENT_NOT_FOUND) from None
    return {ids.mailbox_id(mbx): _entry(tx, acc, mbx)}, None


async def _folder_update(ctx, body: Element):
    st = _state(ctx, body)
    mbx = ids.parse("M", body.child_text("FolderHierarchy:ServerId") or "")
    if body.child_text("FolderHierarchy:ServerId") is None:
        raise _Refused(BAD_REQUEST)
    if mbx is None:
        raise _Refused(NOT_FOUND)
    parent = _parent_id(body.child_text("FolderHierarchy:ParentId"))
    name = _check_name(body.child_text("FolderHierarchy:DisplayName"))
    key, _ = await _write(ctx, _update, st, mbx, parent, name)
    return _answer("FolderUpdate", OK, key)


async def folder_update(ctx, body):
    return await _guarded(ctx, "FolderUpdate", body, _folder_update)


# --- FolderDelete ---------------------------------------------------------------------------

def _subtree(tx, acc: int, mbx: int) -> list[int]:
    """MBX and every mailbox below it, children before their parents."""
    out, todo, seen = [], [mbx], set()
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        out.append(cur)
        todo.extend(tx.children(acc, cur))
    return out[::-1]


def _delete(tx, acc: int, mbx: int):
    m = tx.mailbox(acc, mbx)
    if m is None:
        raise _Refused(NOT_FOUND)
    doomed = _subtree(tx, acc, mbx)
    if any(tx.require_mailbox(acc, d).role is not None for d in doomed):
        raise _Refused(SPECIAL)
    for d in doomed:
        try:
            ops.delete_mailbox(tx, acc, d)
        except NotFound:
            raise _Refused(NOT_FOUND) from None
        except Conflict:
            raise _Refused(SPECIAL) from None
    return {ids.mailbox_id(d): None for d in doomed}, None


async def _folder_delete(ctx, body: Element):
    st = _state(ctx, body)
    sid = body.child_text("FolderHierarchy:ServerId")
    if sid is None:
        raise _Refused(BAD_REQUEST)
    mbx = ids.parse("M", sid)
    if mbx is None:
        raise _Refused(NOT_FOUND)
    key, _ = await _write(ctx, _delete, st, mbx)
    return _answer("FolderDelete", OK, key)


async def folder_delete(ctx, body):
    return await _guarded(ctx, "FolderDelete", body, _folder_delete)


COMMANDS = [
    Command("FolderCreate", folder_create, "FolderHierarchy:FolderCreate",
            "FolderHierarchy:Status"),
    Command("FolderUpdate", folder_update, "FolderHierarchy:FolderUpdate",
            "FolderHierarchy:Status"),
    Command("FolderDelete", folder_delete, "FolderHierarchy:FolderDelete",
            "FolderHierarchy:Status"),
]
