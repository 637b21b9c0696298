"""ActiveSync Ping (MS-ASCMD 2.2.1.13, 3.1.5.8): "tell me when one of these
folders has something for me to Sync".

The request names a HeartbeatInterval (seconds) and Folders (Id = the
collection's ServerId "M7", Class = Email).  Both are remembered per device
(device-state key ``ping``, JSON ``{"hb": 480, "folders": [["M7",
"Email"], ...]}``): a later Ping may omit either, or send no body at all,
and the remembered ones are used (MS-ASCMD 3.1.5.8 "the server MUST cache
the value ... and use it in subsequent Ping requests that do not include"
it).

Answers (Ping Status, MS-ASCMD 2.2.3.177.11):
  1  the interval ran out with nothing new (also: a newer Ping or hanging
     Sync of the device ended this one, or the server is shutting down);
  2  Folders lists the watched folders a Sync would now bring something
     for: ``eas_syncstate.pending(...) > 0`` under the device's current
     SyncKey (3.1.5.8: "the server uses the last SyncKey returned to the
     client" to decide).  A folder the device never synced (pending None)
     has no key to compare with: it counts as changed when the bus says it
     changed after the Ping began (so it is pushed, and a device that Pings
     a folder it never syncs is not sent into a loop);
  3  no Folders or HeartbeatInterval, none remembered (parameters missing);
  4  a malformed request (not a Ping, a non-number interval, a Folder
     without Id, a known folder with a Class other than Email);
  5  HeartbeatInterval outside [eas] min_heartbeat..max_heartbeat, with the
     bound it crossed in HeartbeatInterval (2.2.3.88.1);
  6  more folders than [eas] max_ping_folders, with MaxFolders (2.2.3.102);
  7  folder hierarchy sync required: a watched folder does not exist (any
     more), was renamed or moved, or is not in the hierarchy the device got
     from its last FolderSync; or the hierarchy changed at all since that
     FolderSync (a folder created, renamed or deleted anywhere: the device
     learns it with a FolderSync).  A device that never did a FolderSync
     gets 7 too.

The wait is eas_push's (one bus subscription, caps, the older request of
the device ended, 503 + Retry-After past the caps), outside the device lock
(``ctx.released()``) so the device's next request can run.  Ping is the
same in 12.1 to 16.1.
"""
from __future__ import annotations

import json

import trio

from .. import ids, storeio
from ..proto.eas.wbxml import E, Element
from ..store import ops
from . import eas_foldersync, eas_push, eas_syncstate
from .eas_command import Command

STATE_KEY = "ping"

EXPIRED = 1
CHANGES = 2
MISSING_PARAMETERS = 3
SYNTAX_ERROR = 4
BAD_HEARTBEAT = 5
TOO_MANY_FOLDERS = 6
HIERARCHY_SYNC_REQUIRED = 7
SERVER_ERROR = 8

EMAIL_CLASS = "Email"


def _answer(status: int, *kids: Element) -> Element:
    return E("Ping:Ping", E("Ping:Status", text=str(status)), *kids)


class _Bad(Exception):
    def __init__(self, answer: Element):
        self.answer = answer


def parse(body: Element | None, cfg) -> tuple[int | None, list[list[str]] | None]:
    """(HeartbeatInterval, [[Id, Class], ...]) as the request gives them
    (None: absent); raises _Bad with the answer for a bad request."""
    if body is None:
        return None, None
    if body.qname != "Ping:Ping":
        raise _Bad(_answer(SYNTAX_ERROR))
    hb = None
    raw = body.child_text("Ping:HeartbeatInterval")
    if raw is not None:
        raw = raw.strip()
        if not raw.isdigit() or len(raw) > 9:
            raise _Bad(_answer(SYNTAX_ERROR))
        hb = int(raw)
        if hb < cfg.min_heartbeat or hb > cfg.max_heartbeat:
            limit = cfg.min_heartbeat if hb < cfg.min_heartbeat else cfg.max_heartbeat
            raise _Bad(_answer(BAD_HEARTBEAT, E("Ping:HeartbeatInterval", text=str(limit))))
    folders = None
    fs = body.find("Ping:Folders")
    if fs is not None:
        folders, seen = [], set()
        for f in fs.findall("Ping:Folder"):
            fid = f.child_text("Ping:Id")
            if not fid:
                raise _Bad(_answer(SYNTAX_ERROR))
            cls = f.child_text("Ping:Class") or EMAIL_CLASS
            if fid not in seen:
                seen.add(fid)
                folders.append([fid, cls])
            if len(folders) > cfg.max_ping_folders:
                raise _Bad(_answer(TOO_MANY_FOLDERS,
                                   E("Ping:MaxFolders", text=str(cfg.max_ping_folders))))
        if not folders:
            raise _Bad(_answer(MISSING_PARAMETERS))
    return hb, folders


def _device_hierarchy(view, acc: int, device: str) -> dict | None:
    """The hierarchy the device got from its last FolderSync (None: never)."""
    raw = view.device_state(acc, device, eas_foldersync.STATE_KEY)
    if not raw:
        return None
    try:
        snap = json.loads(raw).get("snap")
    except ValueError:
        return None
    return snap if isinstance(snap, dict) else None


def hierarchy_stale(view, acc: int, device: str, folders: list[list[str]]) -> bool:
    """Whether the device must FolderSync before it can Ping FOLDERS (Status 7)."""
    known = _device_hierarchy(view, acc, device)
    if known is None:
        return True
    now = eas_foldersync.hierarchy(view, acc)
    for fid, _cls in folders:
        if fid not in now or fid not in known or list(known[fid]) != now[fid]:
            return True
    return now != known


def changed_folders(view, acc: int, device: str, folders: list[list[str]],
                    touched=None) -> list[str]:
    """The watched folders a Sync would bring something for.  TOUCHED: the
    bus notification that woke us (None at the start: every folder with a
    sync state is counted; folders without one only count when touched)."""
    out = []
    for fid, _cls in folders:
        mbx = ids.parse("M", fid)
        if touched is not None and (mbx is None or not touched.touches(mbx)):
            continue
        n = eas_syncstate.pending(view, acc, device, fid)
        if n is None:
            if touched is not None:
                out.append(fid)
        elif n > 0:
            out.append(fid)
    return out


def _changes(folders: list[str]) -> Element:
    return _answer(CHANGES, E("Ping:Folders", *(E("Ping:Folder", text=f) for f in folders)))


async def run(ctx, body: Element | None) -> Element:
    cfg = ctx.cfg
    acc, dev = ctx.account, ctx.req.device_id
    try:
        hb, folders = parse(body, cfg)
    except _Bad as bad:
        return bad.answer
    with ctx.store.view() as v:
        raw = v.device_state(acc, dev, STATE_KEY)
    try:
        stored = json.loads(raw) if raw else {}
    except ValueError:
        stored = {}
    use_hb = hb if hb is not None else stored.get("hb")
    use_folders = folders if folders is not None else stored.get("folders")
    if not use_hb or not use_folders:
        return _answer(MISSING_PARAMETERS)
    # a remembered interval outside bounds changed in the config since
    use_hb = min(max(int(use_hb), cfg.min_heartbeat), cfg.max_heartbeat)
    if len(use_folders) > cfg.max_ping_folders:
        return _answer(TOO_MANY_FOLDERS, E("Ping:MaxFolders", text=str(cfg.max_ping_folders)))
    for _fid, cls in use_folders:
        if cls != EMAIL_CLASS:
            return _answer(SYNTAX_ERROR)
    new = {"hb": use_hb, "folders": use_folders}
    if new != stored:
        await storeio.write(ctx.store, ops.put_device_state, acc, dev, STATE_KEY,
                            json.dumps(new, separators=(",", ":")).encode())

    since = ctx.bus.latest(acc)          # before reading: no change slips between
    with ctx.store.view() as v:
        if hierarchy_stale(v, acc, dev, use_folders):
            return _answer(HIERARCHY_SYNC_REQUIRED)
        ready = changed_folders(v, acc, dev, use_folders)
    if ready:
        return _changes(ready)

    deadline = trio.current_time() + use_hb
    async with ctx.released():
        # every change of the account wakes us (one subscription): a watched
        # folder's mail, and the hierarchy anywhere (Status 7)
        async with eas_push.waiting(ctx, None, since) as w:
            while True:
                n = await w.next(deadline)
                if n is None:
                    break
                with ctx.store.view() as v:
                    if _may_change_hierarchy(n) and hierarchy_stale(v, acc, dev, use_folders):
                        return _answer(HIERARCHY_SYNC_REQUIRED)
                    ready = changed_folders(v, acc, dev, use_folders, n)
                if ready:
                    return _changes(ready)
    return _answer(EXPIRED)


def _may_change_hierarchy(n) -> bool:
    """Whether notification N may have changed the folder hierarchy."""
    return "Mailbox" in n.kinds or not n.kinds


COMMANDS = [Command("Ping", run, "Ping:Ping", "Ping:Status")]
