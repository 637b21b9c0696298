"""The lines of an IMAP LIST or LSUB answer (RFC 9051 6.3.9, RFC 5258
LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819 LIST-STATUS), computed from one
view of the account's mailboxes: a pure function, so the session runs it in
the worker pool when the account has many mailboxes (5,000 mailboxes cost
~70 ms of CPU: on the loop that stalled every other session of the worker).

The common patterns skip the pattern automaton: ``*`` matches every name,
``%`` every name without the delimiter, and a literal prefix followed by
``*`` is a prefix test (unless the prefix starts with INBOX, which matches
case-insensitively: those go through ``MailboxPattern.matches``).

An answer without LIST-STATUS is kept in the worker's SORT/THREAD cache
(server/imap_sortcache.py, ``[imap] sort_cache_bytes``), as its bytes, under
the command's arguments and the account's mailbox tree generation
(``View.tree_generation``, ``CTR_TREE``): every write that can change a LIST
line (a mailbox created, deleted, renamed or moved; a role or subscription
changed; a subscription to a deleted name made or dropped) bumps it, so an
answer is only reused while the tree it was made from holds.  Counts are
not in a LIST line (LIST-STATUS answers, which carry them, are not kept).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from .. import vocab
from ..proto.imap import serialize as S
from ..proto.imap.pattern import MailboxPattern, compile_pattern
from ..store.records import Mailbox
from ..views.mailbox_tree import full_names
from .imap_fmt import ROLE_TO_SPECIAL_USE

__all__ = ["listing", "listing_at", "cache_key", "LIST_INLINE"]

SEP = "/"

# accounts with at most this many mailboxes are listed on the loop (the pool's
# hand-over costs more than the listing); more, or an unknown count, in the pool
LIST_INLINE = 200


def cache_key(gen: int, acc: int, reference: str, patterns, selection, returns,
              extended: bool, verb: str, utf8: bool) -> tuple:
    """The SortCache key of a LIST/LSUB answer at tree generation GEN."""
    return ("list", acc, gen, reference, tuple(patterns), frozenset(selection),
            frozenset(returns), extended, verb, utf8)


def listing_at(v, acc: int, *args) -> tuple[int, list[tuple[bytes, Mailbox | None, str]]]:
    """(ACC's tree generation, ``listing(v, acc, *args)``), both read in V."""
    return v.tree_generation(acc), listing(v, acc, *args)


def _matcher(r: MailboxPattern) -> Callable[[str], bool]:
    """R's test, by a shortcut when R is one of the common shapes."""
    src = r.source
    if src == "*":
        return lambda name: True
    if src == "%":
        return lambda name: r.delimiter not in name
    head = src[:-1]
    if src.endswith("*") and "*" not in head and "%" not in head and \
            not (len(src) >= 5 and src[:5].upper() == "INBOX"):
        return lambda name: name.startswith(head)
    return r.matches


def _has_subscribed_descendant(mbx, children, record, also=lambda d: True) -> bool:
    stack = list(children.get(mbx, ()))
    while stack:
        c = stack.pop()
        m = record(c)
        if m is not None and m.subscribed and also(c):
            return True
        stack.extend(children.get(c, ()))
    return False


class _Node(NamedTuple):
    """A mailbox as the ``mbox.name`` keys give it (full_names reads these)."""
    id: int
    parent: int
    name: str


def _records(v, acc: int, wanted: int, total: int) -> Callable[[int], Mailbox | None]:
    """id -> the mailbox record (None: none), read once each: by one scan of
    them all when WANTED of TOTAL is more than a quarter, else one look-up
    each as asked (a LIST of one branch decodes only that branch)."""
    if wanted * 4 > total:
        return {m.id: m for m in v.mailboxes(acc)}.get
    got: dict[int, Mailbox | None] = {}

    def record(mbx: int) -> Mailbox | None:
        if mbx in got:
            return got[mbx]
        m = got[mbx] = v.mailbox(acc, mbx)
        return m
    return record


def listing(v, acc: int, reference: str, patterns, selection, returns, extended: bool,
            verb: str, utf8: bool, want_status: bool) -> list[tuple[bytes, Mailbox | None, str]]:
    """``(line, mailbox, name)`` for each line of the answer, in order;
    MAILBOX is set on the lines a LIST-STATUS ``* STATUS`` line follows
    (WANT_STATUS), else None.  Names and the tree come from the ``mbox.name``
    keys; a mailbox record is decoded only for a listed mailbox (and, for
    RECURSIVEMATCH or LSUB "%", the descendants it asks about)."""
    nodes = [_Node(*t) for t in v.mailbox_tree(acc)]
    orphans = v.orphan_subscriptions(acc)
    names = full_names(nodes, SEP)
    children: dict[int, list[int]] = {}
    for n in nodes:
        children.setdefault(n.parent, []).append(n.id)
    regexes = [compile_pattern(reference, p, SEP) for p in patterns]
    tests = [_matcher(r) for r in regexes]
    matched = [n.id for n in nodes if any(t(names[n.id]) for t in tests)]
    record = _records(v, acc, len(matched), len(nodes))
    subscribed_only = "SUBSCRIBED" in selection
    special_only = "SPECIAL-USE" in selection
    recursive = "RECURSIVEMATCH" in selection
    cmd = verb.encode()
    lines = []
    for mbx in sorted(matched, key=lambda i: (names[i] != "INBOX", names[i])):
        m = record(mbx)
        if m is None:       # (a name key without its record: damaged, not listed)
            continue
        name = names[mbx]
        if subscribed_only and not m.subscribed:
            if recursive and _has_subscribed_descendant(mbx, children, record):
                lines.append((m, name, ["CHILDINFO"]))
            elif verb == "LSUB" and any("%" in p for p in patterns) and \
                    _has_subscribed_descendant(
                    mbx, children, record,
                    lambda d: not any(t(names[d]) for t in tests)):
                # RFC 3501 6.3.9: LSUB "%" shows the unsubscribed parent
                # of a subscribed mailbox the pattern does not reach
                lines.append((m, name, ["NOSELECT"]))
            continue
        if special_only and not m.role or (special_only and m.role == vocab.ROLE_INBOX):
            continue
        lines.append((m, name, []))
    out: list[tuple[bytes, Mailbox | None, str]] = []
    want_su = "SPECIAL-USE" in returns or not extended or special_only
    for m, name, extra in lines:
        attrs = ["\\HasChildren" if children.get(m.id) else "\\HasNoChildren"]
        if verb == "LIST":
            if want_su and m.role in ROLE_TO_SPECIAL_USE:
                attrs.append(ROLE_TO_SPECIAL_USE[m.role])
            if (subscribed_only or "SUBSCRIBED" in returns) and m.subscribed:
                attrs.append("\\Subscribed")
        elif extra == ["NOSELECT"]:
            attrs = ["\\Noselect"]
        out.append((S.list_(attrs, SEP, name, utf8=utf8, command=cmd,
                            childinfo=["SUBSCRIBED"] if extra == ["CHILDINFO"] else ()),
                    m if want_status and not extra else None, name))
    if subscribed_only:
        # subscriptions whose mailbox is gone (RFC 9051 6.3.9)
        for name in sorted(orphans):
            if any(t(name) for t in tests):
                if verb != "LIST":
                    attrs = []
                elif "CHILDREN" in returns:
                    attrs = ["\\HasNoChildren", "\\NonExistent", "\\Subscribed"]
                else:
                    attrs = ["\\NonExistent", "\\Subscribed"]
                out.append((S.list_(attrs, SEP, name, utf8=utf8, command=cmd), None, name))
    return out
