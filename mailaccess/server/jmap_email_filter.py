"""JMAP Email filters and sorts (RFC 8621 4.4.1, 4.4.2; RFC 8620 5.5) ->
the neutral query model (mailaccess/query).

``compile_filter(value, resolve)`` turns a FilterOperator / FilterCondition
into a :mod:`mailaccess.query.model` query, ``compile_sort(value)`` a list
of Comparators into :class:`~mailaccess.query.sort.SortKey` s.  Both check
shapes and types (``invalidArguments``) and refuse what the server does not
know (``unsupportedFilter`` / ``unsupportedSort``), with bounded work: at
most MAX_DEPTH nested operators and MAX_NODES conditions in all.

``immutable(filter, sort, collapse)`` says whether a result can only change
by emails created or destroyed (Email/queryChanges, upToId), and
``snippet_terms`` which strings SearchSnippet/get highlights.
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from typing import Callable

from .. import ids
from ..proto.jmap.errors import MethodError
from ..query import model as q
from ..query import sort as qsort

__all__ = ["compile_filter", "compile_sort", "immutable", "snippet_terms", "SORT_OPTIONS",
           "COLLATIONS", "CONDITIONS", "MAX_DEPTH", "MAX_NODES"]

MAX_DEPTH = 16      # nested FilterOperators
MAX_NODES = 512     # FilterOperators + FilterConditions + their properties
MAX_SORT = 16       # Comparators

_STRING_CONDITIONS = {"text", "from", "to", "cc", "bcc", "subject", "body"}
_KEYWORD_CONDITIONS = {"allInThreadHaveKeyword", "someInThreadHaveKeyword",
                       "noneInThreadHaveKeyword", "hasKeyword", "notKeyword"}
CONDITIONS = frozenset({"inMailbox", "inMailboxOtherThan", "before", "after", "minSize",
                        "maxSize", "hasAttachment", "header"} | _STRING_CONDITIONS
                       | _KEYWORD_CONDITIONS)
"""Every FilterCondition property of RFC 8621 4.4.1 (all supported)."""

# properties whose value can change for an email (queryChanges re-places
# the emails that changed); the thread ones depend on other emails too
_MUTABLE = {"inMailbox", "inMailboxOtherThan", "hasKeyword", "notKeyword"}
_QUANTIFIER = {"allInThreadHaveKeyword": "all", "someInThreadHaveKeyword": "some",
               "noneInThreadHaveKeyword": "none"}
_THREAD = set(_QUANTIFIER)

SORT_OPTIONS = ("receivedAt", "size", "from", "to", "subject", "sentAt", "hasKeyword",
                "allInThreadHaveKeyword", "someInThreadHaveKeyword")
"""The Email sort properties (the Mail capability's emailQuerySortOptions)."""

COLLATIONS = tuple(qsort.COLLATIONS)
"""Collation algorithms a Comparator may name (Core's collationAlgorithms)."""

DEFAULT_COLLATION = "i;unicode-casemap"

# JMAP sort property -> the engine's field
_SORT_FIELDS = {"receivedAt": "receivedAt", "size": "size", "sentAt": "sentAt",
                "subject": "subject", "from": "jmapFrom", "to": "jmapTo"}
_SORT_KEYWORD = {"hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"}

_NOT_IN_KEYWORD = set('(){]%*"\\')


def _invalid(msg: str) -> MethodError:
    return MethodError("invalidArguments", msg)


def _keyword(name: str, v) -> str:
    """An RFC 8621 4.1.1 keyword: 1-255 of %x21-7E but ( ) { ] % * " \\ ;
    compared case-insensitively (stored lowercase)."""
    if not isinstance(v, str) or not 0 < len(v) <= 255 or not all(
            "\x21" <= c <= "\x7e" and c not in _NOT_IN_KEYWORD for c in v):
        raise _invalid(f"'{name}' must be a keyword")
    return v.lower()


_UTC_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$", re.A)


def parse_utc_date(name: str, v) -> float:
    """A UTCDate (RFC 8620 1.4: RFC 3339 date-time with ``Z``) as epoch seconds."""
    if not isinstance(v, str) or not _UTC_DATE.match(v):
        raise _invalid(f"'{name}' must be a UTCDate (YYYY-MM-DDThh:mm:ssZ)")
    whole, _, frac = v[:-1].partition(".")
    try:
        t = _dt.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        raise _invalid(f"'{name}' is not a valid date") from None
    return t.timestamp() + (float("0." + frac) if frac else 0.0)


def _uint(name: str, v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0 or v > 2 ** 53 - 1:
        raise _invalid(f"'{name}' must be an UnsignedInt")
    return v


def _string(name: str, v) -> str:
    if not isinstance(v, str):
        raise _invalid(f"'{name}' must be a string")
    return v


def _condition(cond: dict, resolve: Callable[[str], str | None]) -> q.Query:
    unknown = [k for k in cond if k not in CONDITIONS]
    if unknown:
        raise MethodError("unsupportedFilter",
                          f"unknown filter condition {', '.join(sorted(unknown))}")
    items: list = []
    for k, v in cond.items():
        if v is None:       # a property given as null is not a condition
            continue
        if k == "inMailbox":
            mid = ids.parse("M", resolve(_string(k, v)) or "")
            items.append(q.InMailbox(mid) if mid is not None else q.NOTHING)
        elif k == "inMailboxOtherThan":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise _invalid("'inMailboxOtherThan' must be a list of ids")
            if len(v) > MAX_NODES:
                raise MethodError("unsupportedFilter", "too many mailboxes in inMailboxOtherThan")
            mids = {ids.parse("M", resolve(x) or "") for x in v} - {None}
            items.append(q.InMailboxOtherThan(frozenset(mids)))
        elif k == "before":
            items.append(q.Received(before=math.ceil(parse_utc_date(k, v))))
        elif k == "after":
            items.append(q.Received(after=math.ceil(parse_utc_date(k, v))))
        elif k == "minSize":
            items.append(q.Larger(_uint(k, v) - 1))
        elif k == "maxSize":
            items.append(q.Smaller(_uint(k, v)))
        elif k == "hasKeyword":
            items.append(q.Keyword(_keyword(k, v)))
        elif k == "notKeyword":
            items.append(q.Not(q.Keyword(_keyword(k, v))))
        elif k in _THREAD:
            items.append(q.ThreadKeyword(_keyword(k, v), _QUANTIFIER[k]))
        elif k == "hasAttachment":
            if not isinstance(v, bool):
                raise _invalid("'hasAttachment' must be a boolean")
            items.append(q.HasAttachment(v))
        elif k == "text":
            items.append(q.Text(_string(k, v)))
        elif k == "body":
            items.append(q.Body(_string(k, v)))
        elif k in _STRING_CONDITIONS:           # from to cc bcc subject
            items.append(q.Header(k, _string(k, v)))
        elif k == "header":
            if (not isinstance(v, list) or not 1 <= len(v) <= 2
                    or not all(isinstance(x, str) for x in v)):
                raise _invalid("'header' must be [name] or [name, value]")
            name = v[0].strip()
            if not name or ":" in name or any(ord(c) <= 32 or ord(c) > 126 for c in name):
                raise _invalid("'header' names a header field: printable ASCII, no colon")
            items.append(q.Header(name.lower(), v[1] if len(v) == 2 else ""))
    if not items:
        return q.All()
    return items[0] if len(items) == 1 else q.And(items)


def compile_filter(value, resolve: Callable[[str], str | None] = lambda s: s) -> q.Query:
    """The query for a JMAP Email ``filter`` (None: every email).  RESOLVE
    maps a mailbox id argument (``#creation`` references) to the real id."""
    if value is None:
        return q.All()
    budget = [MAX_NODES]

    def walk(node, depth: int):
        if not isinstance(node, dict):
            raise _invalid("a filter is a FilterOperator or FilterCondition object")
        budget[0] -= 1 + len(node)
        if budget[0] < 0:
            raise MethodError("unsupportedFilter", f"the filter has more than {MAX_NODES} parts")
        if "operator" not in node:
            return _condition(node, resolve)
        op = node["operator"]
        conds = node.get("conditions")
        extra = set(node) - {"operator", "conditions"}
        if extra:
            raise _invalid(f"a FilterOperator has no {', '.join(sorted(extra))}")
        if not isinstance(op, str):
            raise _invalid("'operator' must be a string")
        if op not in ("AND", "OR", "NOT"):
            raise MethodError("unsupportedFilter", f"unknown operator {op!r}")
        if not isinstance(conds, list):
            raise _invalid("'conditions' must be a list")
        if depth >= MAX_DEPTH:
            raise MethodError("unsupportedFilter",
                              f"filters nest at most {MAX_DEPTH} operators deep")
        kids = [walk(c, depth + 1) for c in conds]
        if op == "AND":
            return q.And(kids) if kids else q.All()
        if op == "OR":
            return q.Or(kids)
        return q.Not(q.Or(kids)) if kids else q.All()

    return walk(value, 0)


def compile_sort(value) -> list[qsort.SortKey]:
    """SortKeys for a JMAP ``sort`` (None: newest first, as mail clients show)."""
    if value is None:
        return [qsort.SortKey("receivedAt", True)]
    if not isinstance(value, list):
        raise _invalid("'sort' must be a list of Comparators")
    if len(value) > MAX_SORT:
        raise MethodError("unsupportedSort", f"at most {MAX_SORT} Comparators")
    out = []
    for c in value:
        if not isinstance(c, dict):
            raise _invalid("a Comparator is an object")
        prop = c.get("property")
        if not isinstance(prop, str):
            raise _invalid("a Comparator needs a 'property' string")
        asc = c.get("isAscending", True)
        if asc is None:
            asc = True
        if not isinstance(asc, bool):
            raise _invalid("'isAscending' must be a boolean")
        coll = c.get("collation")
        if coll is not None and not isinstance(coll, str):
            raise _invalid("'collation' must be a string")
        if coll is not None and coll not in qsort.COLLATIONS:
            raise MethodError("unsupportedSort", f"unknown collation {coll!r}")
        if prop in _SORT_KEYWORD:
            fld = f"{prop}:{_keyword('keyword', c.get('keyword'))}"
        elif prop in _SORT_FIELDS:
            fld = _SORT_FIELDS[prop]
        else:
            raise MethodError("unsupportedSort", f"cannot sort by {prop!r}")
        out.append(qsort.SortKey(fld, not asc, coll or DEFAULT_COLLATION))
    return out


def immutable(filter_value, sort_value, collapse_threads: bool) -> bool:
    """Whether the filter and sort read only what never changes for an
    email (its content, size, dates): then only created and destroyed emails
    move a result, and queryChanges may stop at upToId (RFC 8620 5.6).
    Keywords, mailboxes, thread-wide conditions and collapsing all change."""
    props: set = set()
    _filter_props(filter_value, props)
    sprops = {c.get("property") for c in sort_value or () if isinstance(c, dict)}
    return not (collapse_threads or props & (_MUTABLE | _THREAD) or sprops & _SORT_KEYWORD)


def _filter_props(value, acc: set) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "operator" in node:
            stack.extend(node.get("conditions") or [])
        else:
            acc.update(k for k, v in node.items() if v is not None)


@dataclass
class Terms:
    """What SearchSnippet/get highlights: in the subject, in the body."""

    subject: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)


def snippet_terms(value) -> Terms:
    """The ``text``/``subject``/``body`` strings of a filter, outside NOTs."""
    t = Terms()
    stack = [value]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if "operator" in node:
            if node.get("operator") != "NOT":
                stack.extend(node.get("conditions") or [])
            continue
        for k in ("text", "subject", "body"):
            v = node.get(k)
            if isinstance(v, str) and v.strip():
                if k in ("text", "subject"):
                    t.subject.append(v)
                if k in ("text", "body"):
                    t.body.append(v)
    return t
