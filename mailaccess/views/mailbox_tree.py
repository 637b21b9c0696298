"""Full mailbox names from an account's parent links, for the readers that
show every mailbox at once (IMAP LIST/LSUB, NOTIFY's mailbox scan): each
name is made once from its parent's, not by walking up from every mailbox."""
from __future__ import annotations

from ..store.records import Mailbox

__all__ = ["full_names"]


def full_names(boxes: list[Mailbox], sep: str = "/") -> dict[int, str]:
    """mailbox id -> full name (SEP between the levels).  A parent that is
    not among BOXES, or a loop in damaged data, ends the name there."""
    by_id = {m.id: m for m in boxes}
    names: dict[int, str] = {}
    for m in boxes:
        chain, p, seen = [], m, set()
        while p is not None and p.id not in names and p.id not in seen:
            seen.add(p.id)
            chain.append(p)
            p = by_id.get(p.parent)
        base = names.get(p.id) if p is not None else None
        for q in reversed(chain):
            base = q.name if base is None else base + sep + q.name
            names[q.id] = base
    return names
