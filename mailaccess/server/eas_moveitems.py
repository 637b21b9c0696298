"""ActiveSync MoveItems (MS-ASCMD 2.2.1.12): move emails between folders.

Each ``Move`` (SrcMsgId, SrcFldId, DstFldId) is an IMAP-style move of the
email's membership in the source mailbox to the destination, through
``ops.move`` (the op IMAP MOVE uses), so IMAP, JMAP and other devices see
it at once; the device's own next Sync shows a Delete in the source
collection and an Add in the destination (eas_sync's business).

Statuses (MS-ASCMD 2.2.3.177.10): 3 success, with ``DstMsgId`` = the same
ServerId ("E42": item ServerIds are email ids, kept by a move); 1 the source
folder or the item in it is unknown (moved away, deleted); 2 the destination
folder is unknown; 4 source and destination are the same; 5 the move failed
in the store.  A request without ``Move`` or with a Move missing one of its
three ids is answered per Move with 1/2 (a malformed body: the top-level
Status 5 is not defined for that, so each Move says what was wrong).
"""
from __future__ import annotations

import logging

from .. import ids, storeio
from ..proto.eas.wbxml import E, Element
from ..store import ops
from ..store.errors import StoreError
from . import eas_syncstate
from .eas_command import Command
from .eas_item import parse_server_id, server_id

log = logging.getLogger("mailaccess.eas")

BAD_SOURCE = 1
BAD_DESTINATION = 2
SUCCESS = 3
SAME_FOLDER = 4
FAILED = 5

MAX_MOVES = 512     # Move elements in one request; more are answered 5


def _plan(v, acc: int, moves: list[tuple[str, str, str]]) -> list[tuple]:
    """For each (SrcMsgId, SrcFldId, DstFldId): (status, src, uid, dst, eid);
    status None: ready to move."""
    out = []
    for i, (msg, src_s, dst_s) in enumerate(moves):
        if i >= MAX_MOVES:
            out.append((FAILED, None, None, None, None))
            continue
        src = ids.parse("M", src_s or "")
        dst = ids.parse("M", dst_s or "")
        eid = parse_server_id(msg)
        if src is None or v.mailbox(acc, src) is None:
            out.append((BAD_SOURCE, None, None, None, None))
            continue
        rec = v.email(acc, eid) if eid is not None else None
        mem = rec.member(src) if rec is not None else None
        if mem is None:
            out.append((BAD_SOURCE, None, None, None, None))
            continue
        if dst is None or v.mailbox(acc, dst) is None:
            out.append((BAD_DESTINATION, None, None, None, None))
            continue
        if dst == src:
            out.append((SAME_FOLDER, None, None, None, None))
            continue
        out.append((None, src, mem.uid, dst, eid))
    return out


def _move_all(tx, acc: int, device: str, plan: list[tuple]) -> list[int]:
    """Every planned move in one transaction -> a status for each.  The
    moving device's sync states learn of its own moves (note_move), so its
    next Sync sends no Delete/Add for what it already moved."""
    out, moved = [], []
    for st, src, uid, dst, _eid in plan:
        if st is not None:
            out.append(st)
            continue
        try:
            done = ops.move(tx, acc, src, [uid], dst)
        except StoreError:
            out.append(FAILED)
            continue
        # nothing moved: the email left the source since the plan was made
        out.append(SUCCESS if done else BAD_SOURCE)
        if done:
            moved.append((ids.mailbox_id(src), ids.mailbox_id(dst), _eid))
    # the states told once per collection, not once per move
    eas_syncstate.note_moves(tx, acc, device, moved)
    return out


async def run(ctx, body: Element | None) -> Element:
    if body is None or body.qname != "Move:MoveItems":
        return E("Move:MoveItems", E("Move:Status", text=str(FAILED)))
    moves = [(m.child_text("Move:SrcMsgId") or "", m.child_text("Move:SrcFldId") or "",
              m.child_text("Move:DstFldId") or "") for m in body.findall("Move:Move")]
    if not moves:
        return E("Move:MoveItems", E("Move:Status", text=str(FAILED)))
    with ctx.store.view() as v:
        plan = _plan(v, ctx.account, moves)
    if any(p[0] is None for p in plan):
        try:
            statuses = await storeio.write(ctx.store, _move_all, ctx.account,
                                           ctx.req.device_id, plan)
        except StoreError as exc:
            log.info("EAS MoveItems for %s failed: %s", ctx.username, exc)
            statuses = [p[0] if p[0] is not None else FAILED for p in plan]
    else:
        statuses = [p[0] for p in plan]
    responses = []
    for (msg, _s, _d), st, p in zip(moves, statuses, plan):
        kids = [E("Move:SrcMsgId", text=msg), E("Move:Status", text=str(st))]
        if st == SUCCESS:
            # the ServerId stays: it is the email's id in every folder
            kids.append(E("Move:DstMsgId", text=server_id(p[4])))
        responses.append(E("Move:Response", *kids))
    return E("Move:MoveItems", *responses)


COMMANDS = [Command("MoveItems", run, "Move:MoveItems", "Move:Status")]
