"""Oracles for query/facts.py: the ENVELOPE parse and the per-key values SORT
and THREAD computed from a whole MessageIndex before facts.py (kept as they
were, to hold the in-place reading to them)."""
from email.header import decode_header, make_header

from mailaccess.mime import index as mindex
from mailaccess.query.sort import addr_mailbox, display_value


def envelope_items(data: bytes):
    """The ENVELOPE as nested lists of bytes/None (None when malformed)."""
    pos = 0
    n = len(data)

    def value():
        nonlocal pos
        while pos < n and data[pos] == 0x20:
            pos += 1
        if pos >= n:
            raise ValueError("truncated")
        c = data[pos]
        if c == 0x28:
            pos += 1
            out = []
            while True:
                while pos < n and data[pos] == 0x20:
                    pos += 1
                if pos >= n:
                    raise ValueError("truncated")
                if data[pos] == 0x29:
                    pos += 1
                    return out
                out.append(value())
        if c == 0x22:
            pos += 1
            buf = bytearray()
            while pos < n and data[pos] != 0x22:
                if data[pos] == 0x5C and pos + 1 < n:
                    pos += 1
                buf.append(data[pos])
                pos += 1
            pos += 1
            return bytes(buf)
        if c == 0x7B:
            close = data.index(b"}", pos)
            size = int(data[pos + 1:close])
            start = close + 3
            pos = start + size
            return data[start:pos]
        end = pos
        while end < n and data[end] not in b" ()":
            end += 1
        atom = data[pos:end]
        pos = end
        return None if atom == b"NIL" else atom

    try:
        v = value()
    except (ValueError, IndexError):
        return None
    return v if isinstance(v, list) else None


def oracle(envelope: bytes) -> tuple:
    items = envelope_items(envelope)
    out = []
    for field in (2, 5, 6):
        g = None
        if items and len(items) > field and isinstance(items[field], list) and items[field]:
            first = items[field][0]
            if isinstance(first, list) and len(first) >= 4 and first[3] is None \
                    and isinstance(first[2], bytes):
                g = first[2]
        out.append(g)
    return tuple(out)


def group_name(envelope: bytes, field: int):
    g = oracle(envelope)[(2, 5, 6).index(field)]
    if g is None:
        return None
    raw = g.decode("utf-8", "replace")
    try:
        return str(make_header(decode_header(raw)))
    except Exception:
        return raw


def sort_strings(mi: mindex.MessageIndex) -> dict:
    """The uncollated string of each SORT key, as sort._value computed it."""
    out = {"subject": mindex.base_subject(mi.subject or ""),
           "jmapFrom": display_value(mi.from_), "jmapTo": display_value(mi.to)}
    for fld, pos, addrs in (("from", 2, mi.from_), ("to", 5, mi.to), ("cc", 6, mi.cc)):
        g = group_name(mi.envelope, pos)
        out[fld] = g if g is not None else addr_mailbox(addrs)
    for fld, pos, addrs in (("displayfrom", 2, mi.from_), ("displayto", 5, mi.to)):
        g = group_name(mi.envelope, pos)
        out[fld] = g if g is not None else display_value(addrs)
    return out
