"""Pieces for differential IMAP tests: a raw line client, a response parser,
the normalisation of what two correct servers may legitimately answer
differently, and a private Dovecot peer.

The client sends exactly the bytes a test gives it (same tags on both
servers) and collects every response line up to the tagged one, literals
inlined.  The parser turns a response into a small tree (atoms, strings,
lists) so the normaliser can compare meaning rather than spelling: a quoted
string and a literal with the same bytes are the same string, FETCH items
may come in any order, and so on.
"""
from __future__ import annotations

import functools
import importlib.util
import os
import re
from dataclasses import dataclass

from imap_helpers import Raw

# --------------------------------------------------------------------------------------------
# raw client


# The shared raw client (tests/imap_helpers.py) as the differential tests use it:
# no login, whole responses (literals inlined), LOGOUT sent but not awaited on close.
RawIMAP = functools.partial(Raw, login=False, timeout=30, whole=True, logout="send")


def login(port: int, user: str = "alice", password: str = "pw") -> Raw:
    """A RawIMAP session logged in (the LOGIN must be OK)."""
    c = RawIMAP(port)
    r = c.command(f"LOGIN {user} {password}")
    assert r[-1].split()[1] == b"OK", r
    return c


def message(subject: str, frm: str = "a@example.org", extra: str = "",
            body: bytes = b"body\r\n", domain: str = "diff") -> bytes:
    """A small message for a case: Message-ID <SUBJECT@DOMAIN>, EXTRA header
    lines (CRLF-ended) before the blank line."""
    return (f"From: {frm}\r\nTo: alice@example.org\r\nSubject: {subject}\r\n"
            f"Date: Mon, 3 Nov 2025 10:00:00 +0000\r\nMessage-ID: <{subject}@{domain}>\r\n"
            f"{extra}\r\n").encode() + body


# --------------------------------------------------------------------------------------------
# parser


@dataclass(frozen=True)
class Atom:
    v: str

    def __repr__(self):
        return self.v


@dataclass(frozen=True)
class Str:
    v: bytes

    def __repr__(self):
        return '"' + self.v.decode("utf-8", "replace").replace("\r\n", "\\r\\n") + '"'


class Nil:
    def __repr__(self):
        return "NIL"

    def __eq__(self, other):
        return isinstance(other, Nil)

    def __hash__(self):
        return 0


NIL = Nil()


def parse(data: bytes, pos: int = 0, close: bytes | None = None):
    """Tokens of DATA from POS up to CLOSE (or the end): a list of Atom/Str/NIL/list."""
    out: list = []
    n = len(data)
    while pos < n:
        c = data[pos:pos + 1]
        if c in (b" ", b"\r", b"\n"):
            pos += 1
        elif close is not None and c == close:
            return out, pos + 1
        elif c == b"(":
            sub, pos = parse(data, pos + 1, b")")
            out.append(sub)
        elif c == b'"':
            pos += 1
            buf = b""
            while data[pos:pos + 1] != b'"':
                if data[pos:pos + 1] == b"\\":
                    pos += 1
                buf += data[pos:pos + 1]
                pos += 1
            out.append(Str(buf))
            pos += 1
        elif c in (b"{", b"~") and re.match(rb"~?\{\d+\+?\}\r\n", data[pos:]):
            m = re.match(rb"~?\{(\d+)\+?\}\r\n", data[pos:])
            start = pos + m.end()
            size = int(m.group(1))
            out.append(Str(data[start:start + size]))
            pos = start + size
        else:
            start = pos
            depth = 0
            while pos < n:
                ch = data[pos:pos + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in (b" ", b"(", b")", b"\r", b"\n"):
                    if not (ch == b"(" and False):
                        break
                pos += 1
            word = data[start:pos].decode("utf-8", "replace")
            out.append(NIL if word.upper() == "NIL" else Atom(word))
    return out, pos


def tokens(resp: bytes) -> list:
    return parse(resp)[0]


# --------------------------------------------------------------------------------------------
# normalisation

STATUS_RE = re.compile(rb"^(\S+) (OK|NO|BAD|BYE|PREAUTH)(?: \[([^\]]*(?:\[[^\]]*\][^\]]*)*)\])?")

# response codes whose value is the server's own business; the code's presence is compared
# where it is mandated, its value never
VALUE_FREE_CODES = {"UIDVALIDITY"}
# untagged OK codes that are server-specific and dropped altogether
DROP_UNTAGGED_CODES = {"CAPABILITY", "MAILBOXID", "HIGHESTMODSEQ", "NOMODSEQ", "URLMECH",
                       "CLOSED", "ALERT", "UNSEEN_IGNORED"}
DROP_TAGGED_CODES = {"CAPABILITY", "MAILBOXID", "CLIENTBUG"}   # CLIENTBUG: advice (RFC 5530)
# RFC 5530 codes on a failure are optional detail; TRYCREATE is the one a client acts on
KEEP_FAILURE_CODES = {"TRYCREATE", "BADCHARSET"}


SPECIAL_USE = {"\\all", "\\archive", "\\drafts", "\\flagged", "\\junk", "\\sent",
               "\\trash"}


def _unquote(tok):
    if isinstance(tok, list):
        return [_unquote(tok[0])] + tok[1:] if tok else tok
    if isinstance(tok, Str):
        return Atom(tok.v.decode().upper())
    return tok


def norm_flag(a) -> str:
    """Flags compare case-insensitively (mailaccess stores keywords lowercased, by design)."""
    return repr(a).lower()


def norm_flag_list(lst, drop_recent=True, system_only=False) -> str:
    items = sorted({norm_flag(x) for x in lst
                    if not (drop_recent and norm_flag(x) == "\\recent")
                    and not (system_only and not norm_flag(x).startswith("\\"))})
    return "(" + " ".join(items) + ")"


def render(tok) -> str:
    if isinstance(tok, list):
        return "(" + " ".join(render(t) for t in tok) + ")"
    return repr(tok)


def norm_code(code: str) -> str | None:
    name = code.split(" ", 1)[0].upper()
    if name in VALUE_FREE_CODES:
        return name + " <v>"
    if name == "PERMANENTFLAGS":
        return "PERMANENTFLAGS " + norm_flag_list(tokens(code.encode())[1], system_only=True)
    if name in ("COPYUID", "APPENDUID"):
        parts = code.split(" ")
        return " ".join([name, "<uidvalidity>"] + parts[2:])
    return code


class Normaliser:
    """Turns one command's responses into comparable lines.

    Options (per command) say which freedoms apply: ``ordered`` keeps the order of the
    untagged responses (SORT, THREAD results are one response anyway), ``internaldate``
    replaces INTERNALDATE values (APPEND without a date).
    """

    def __init__(self, drop_internaldate: bool = False, keep_order: bool = False,
                 drop_modseq: bool = True, sort_search: bool = True,
                 drop_flag_updates: bool = False, children: bool = True,
                 keep_recent: bool = True):
        # keep_recent: compare \Recent, RECENT and STATUS RECENT (every case
        # agrees with Dovecot since mailaccess sets \Recent; False leaves them
        # out, for a case where only the moment of a claim differs: see
        # test_vs_dovecot_recent.py)
        self.keep_recent = keep_recent
        self.children = children
        self.drop_flag_updates = drop_flag_updates
        self.drop_internaldate = drop_internaldate
        self.keep_order = keep_order
        self.drop_modseq = drop_modseq
        self.sort_search = sort_search

    def __call__(self, responses: list[bytes]) -> list[str]:
        untagged: list[str] = []
        expunged: list[int] = []
        tagged: list[str] = []
        for r in responses:
            if r.startswith(b"+"):
                continue
            m = STATUS_RE.match(r)
            if m and not r.startswith(b"* "):
                status = m.group(2).decode()
                code = m.group(3).decode() if m.group(3) is not None else None
                if code and code.split(" ", 1)[0].upper() in DROP_TAGGED_CODES:
                    code = None
                if code and status != "OK" and code.split(" ", 1)[0].upper() not in KEEP_FAILURE_CODES:
                    code = None
                if code and code.upper().startswith("BADCHARSET"):
                    code = "BADCHARSET"   # the list of supported charsets is optional
                line = f"TAGGED {status}" + (f" [{norm_code(code)}]" if code else "")
                tagged.append(line)
                continue
            if m:       # untagged status
                status = m.group(2).decode()
                code = m.group(3).decode() if m.group(3) is not None else None
                if code is None:
                    continue            # free text only
                if code.split(" ", 1)[0].upper() in DROP_UNTAGGED_CODES:
                    continue
                untagged.append(f"* {status} [{norm_code(code)}]")
                continue
            toks = tokens(r[2:])
            line = self.untagged(toks, expunged)
            if line is not None:
                untagged.append(line)
        if expunged:
            # The same set of messages may be announced in several valid orders
            # (3 then 2, or 2 then 2); compare the original sequence numbers removed.
            removed = []
            alive = list(range(1, 100000))
            for s in expunged:
                removed.append(alive.pop(s - 1))
            untagged.append("* EXPUNGED originals " + ",".join(map(str, sorted(removed))))
        if self.drop_flag_updates:
            untagged = [u for u in untagged
                        if not u.startswith(("* FLAGS", "* OK [PERMANENTFLAGS"))]
        if not self.keep_order:
            untagged.sort(key=_sort_key)
        return untagged + tagged

    def untagged(self, toks: list, expunged: list[int]) -> str | None:
        if not toks:
            return None
        first = toks[0]
        if isinstance(first, Atom) and first.v.isdigit() and len(toks) > 1:
            kind = toks[1].v.upper()
            if kind == "EXPUNGE":
                expunged.append(int(first.v))
                return None
            if kind == "RECENT" and not self.keep_recent:
                return None
            if kind == "FETCH":
                return f"* {first.v} FETCH " + self.fetch(toks[2])
            return "* " + " ".join(render(t) for t in toks)
        name = first.v.upper() if isinstance(first, Atom) else ""
        if name == "CAPABILITY":
            return None
        if name == "FLAGS":
            return "* FLAGS " + norm_flag_list(toks[1], system_only=True)
        if name in ("SEARCH", "SORT"):
            nums = [t.v for t in toks[1:] if isinstance(t, Atom) and t.v.isdigit()]
            rest = [render(t) for t in toks[1:] if not (isinstance(t, Atom) and t.v.isdigit())]
            if self.drop_modseq:
                rest = [x for x in rest if not x.startswith("(MODSEQ")]
            if name == "SEARCH" and self.sort_search:
                nums = sorted(nums, key=int)
            return f"* {name} " + " ".join(nums + rest)
        if name == "ESEARCH":
            out = []
            it = iter(toks[1:])
            for t in it:
                if isinstance(t, list):
                    out.append(render(t))             # (TAG "x")
                elif t.v.upper() == "UID":
                    out.append("UID")
                else:
                    val = next(it)
                    if t.v.upper() == "MODSEQ" and self.drop_modseq:
                        continue
                    out.append(f"{t.v.upper()} {render(val)}")
            head = [x for x in out if x.startswith("(") or x == "UID"]
            return "* ESEARCH " + " ".join(head + sorted(x for x in out if x not in head))
        if name in ("LIST", "LSUB"):
            attrs = [repr(a).lower() for a in toks[1]]
            if not self.children:
                # RFC 5258 §4: without the CHILDREN return option a server may or may
                # not volunteer \HasChildren/\HasNoChildren
                attrs = [a for a in attrs if a not in ("\\haschildren", "\\hasnochildren")]
            if name == "LSUB":
                # special-use attributes on LSUB are optional (RFC 6154 defines them for LIST)
                attrs = [a for a in attrs if a not in SPECIAL_USE]
            attrs = "(" + " ".join(sorted(attrs)) + ")"
            # extended items: the tag is an astring, "CHILDINFO" and CHILDINFO are the same
            ext = [_unquote(t) for t in toks[4:]]
            rest = " ".join(render(t) for t in toks[2:4] + ext)
            return f"* {name} {attrs} {rest}"
        if name == "STATUS":
            items = toks[2]
            pairs = sorted(
                (items[i].v.upper(), "<v>" if items[i].v.upper() in ("UIDVALIDITY", "HIGHESTMODSEQ",
                                                                      "MAILBOXID")
                 else render(items[i + 1]))
                for i in range(0, len(items), 2)
                if items[i].v.upper() != "RECENT" or self.keep_recent)
            return f"* STATUS {render(toks[1])} (" + " ".join(f"{k} {v}" for k, v in pairs) + ")"
        if name in ("ENABLED", "ID", "NAMESPACE"):
            return None
        return "* " + " ".join(render(t) for t in toks)

    def fetch(self, items: list) -> str:
        pairs = {}
        for i in range(0, len(items), 2):
            key = items[i].v.upper() if isinstance(items[i], Atom) else render(items[i])
            val = items[i + 1]
            if key == "FLAGS":
                v = norm_flag_list(val, drop_recent=not self.keep_recent)
            elif key in ("EMAILID", "THREADID"):
                v = "<id>" if val != NIL and val != [] else "<none>"
            elif key == "MODSEQ":
                if self.drop_modseq:
                    continue
                v = render(val)
            elif key in ("BODYSTRUCTURE", "BODY") and isinstance(val, list):
                v = render(norm_body(val))
            elif key == "ENVELOPE":
                v = render(norm_envelope(val))
            elif key == "INTERNALDATE":
                v = "<date>" if self.drop_internaldate else normalise_internaldate(val)
            else:
                v = render(val)
            pairs[_fetch_key(key)] = v
        return "(" + " ".join(f"{k} {pairs[k]}" for k in sorted(pairs)) + ")"


def _ws(tok):
    """Dovecot collapses folding whitespace (and turns TAB into SP) in ENVELOPE strings;
    mailaccess unfolds exactly as RFC 5322 says (CRLF removed, WSP kept).  Both are
    readable; compare with runs of whitespace collapsed."""
    if isinstance(tok, Str):
        return Str(re.sub(rb"[ \t]+", b" ", tok.v))
    if isinstance(tok, list):
        return [_ws(t) for t in tok]
    return tok


def norm_envelope(env):
    return _ws(env)


def _lower(tok):
    return Str(tok.v.lower()) if isinstance(tok, Str) else tok


def _params(p):
    if isinstance(p, list):
        return [(_lower(x) if i % 2 == 0 else x) for i, x in enumerate(p)]
    return p


def _lang(l):
    # body-fld-lang is nstring / (string ...): a one-element list is the same as the string
    if isinstance(l, list) and len(l) == 1:
        return _lower(l[0])
    if isinstance(l, list):
        return [_lower(x) for x in l]
    return _lower(l)


def _disp(d):
    if isinstance(d, list) and len(d) == 2:
        return [_lower(d[0]), _params(d[1])]
    return d


def norm_body(b):
    """BODY/BODYSTRUCTURE: MIME type, subtype, encoding, parameter names and disposition
    are case-insensitive (RFC 2045); compare them lowercased."""
    if b and isinstance(b[0], list):          # multipart: parts..., subtype, ext...
        i = 0
        parts = []
        while i < len(b) and isinstance(b[i], list):
            parts.append(norm_body(b[i]))
            i += 1
        rest = b[i:]
        out = parts + [_lower(rest[0])] if rest else parts
        ext = rest[1:]
        if len(ext) > 0:
            out.append(_params(ext[0]))
        if len(ext) > 1:
            out.append(_disp(ext[1]))
        if len(ext) > 2:
            out.append(_lang(ext[2]))
        out.extend(ext[3:])
        return out
    b = list(b)
    b[0], b[1] = _lower(b[0]), _lower(b[1])
    b[2] = _params(b[2])
    b[5] = _lower(b[5])
    t, st = b[0].v if isinstance(b[0], Str) else b"", b[1].v if isinstance(b[1], Str) else b""
    n = 7
    if t == b"message" and st in (b"rfc822", b"global"):
        b[7] = norm_envelope(b[7])
        b[8] = norm_body(b[8])
        n = 10
    elif t == b"text":
        n = 8
    ext = b[n:]
    if len(ext) > 1:
        ext[1] = _disp(ext[1])
    if len(ext) > 2:
        ext[2] = _lang(ext[2])
    return b[:n] + ext


def _fetch_key(key: str) -> str:
    # BODY[HEADER.FIELDS (From)] -> compare section spellings case-insensitively
    return key.upper()


def normalise_internaldate(val) -> str:
    """The same instant may be given in another zone; compare it in UTC."""
    from email.utils import parsedate_to_datetime  # noqa: F401
    from datetime import datetime, timezone
    s = val.v.decode() if isinstance(val, Str) else repr(val)
    try:
        d = datetime.strptime(s.strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return "BAD-DATE " + s
    return d.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _sort_key(line: str):
    m = re.match(r"\* (\d+) ", line)
    if m:
        return (1, int(m.group(1)), line)
    return (0, 0, line)


# --------------------------------------------------------------------------------------------
# Dovecot peer


def _bench_dovecot():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "bench", "dovecot.py")
    spec = importlib.util.spec_from_file_location("_mailaccess_bench_dovecot", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_dovecot(workdir: str):
    """A private Dovecot (bench/dovecot.py) with an INBOX namespace shaped like
    mailaccess's: separator "/", the same special-use mailboxes, subscribed."""
    bd = _bench_dovecot()

    class DiffDovecot(bd.Dovecot):
        def write_config(self) -> None:
            super().write_config()
            extra = """
namespace inbox {
  inbox = yes
  separator = /
  prefix =
  mailbox Drafts {
    auto = subscribe
    special_use = \\Drafts
  }
  mailbox Sent {
    auto = subscribe
    special_use = \\Sent
  }
  mailbox Trash {
    auto = subscribe
    special_use = \\Trash
  }
  mailbox Junk {
    auto = subscribe
    special_use = \\Junk
  }
  mailbox Archive {
    auto = subscribe
    special_use = \\Archive
  }
}
mail_attribute_dict =
imap_capability = +OBJECTID
"""
            with open(self.conf, "a") as fh:
                fh.write(extra)

        def home(self) -> str:
            return os.path.join(self.workdir, "home", self.user)

    return DiffDovecot(workdir, mail_format="sdbox", max_connections=20)


# --------------------------------------------------------------------------------------------
# running one conversation against both servers


@dataclass
class Diff:
    command: bytes
    mailaccess: list[bytes]
    dovecot: list[bytes]
    norm_mailaccess: list[str]
    norm_dovecot: list[str]

    def describe(self) -> str:
        import difflib
        d = "\n".join(difflib.unified_diff(self.norm_dovecot, self.norm_mailaccess,
                                           "dovecot (normalised)", "mailaccess (normalised)",
                                           lineterm="", n=1))
        return (f"C: {self.command.decode('utf-8', 'replace')}\n{d}\n"
                f"-- mailaccess raw:\n{_clip(self.mailaccess)}\n-- dovecot raw:\n{_clip(self.dovecot)}")


def _clip(rs: list[bytes], limit: int = 3000) -> str:
    s = b"".join(rs).decode("utf-8", "replace")
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


class Duo:
    """Two sessions, one per server, fed the same commands."""

    def __init__(self, ma_port: int, dc_port: int, user: str = "alice", password: str = "pw"):
        self.ma = login(ma_port, user, password)
        self.dc = login(dc_port, user, password)
        self.diffs: list[Diff] = []

    def send(self, text: str | bytes, literals=(), norm: Normaliser | None = None,
             compare: bool = True, extra_fetch_ok: bool = False):
        """Send TEXT to both; record a Diff when the normalised answers differ.

        EXTRA_FETCH_OK: mailaccess may volunteer untagged FETCH responses Dovecot does
        not send (flags of messages a STORE did not change, flag refreshes after COPY);
        unsolicited FETCH is allowed at any time (RFC 3501 §7), so only Dovecot's lines
        must all be present."""
        a = self.ma.command(text, list(literals))
        b = self.dc.command(text, list(literals))
        t = text.decode() if isinstance(text, bytes) else text
        verb = t.split(" ", 1)[0].upper()
        if norm is None:
            norm = Normaliser(
                # FLAGS/PERMANENTFLAGS outside SELECT/EXAMINE only announce new keywords
                drop_flag_updates=verb not in ("SELECT", "EXAMINE"),
                children="CHILDREN" in t.upper())
        n = norm
        na, nb = n(a), n(b)
        if extra_fetch_ok and na != nb:
            extra = [x for x in na if x not in nb]
            if all(re.match(r"\* \d+ FETCH ", x) for x in extra) and \
                    [x for x in na if x not in extra] == nb:
                na = nb
        if compare and na != nb:
            self.diffs.append(Diff(text if isinstance(text, bytes) else text.encode(),
                                   a, b, na, nb))
        return a, b

    def report(self) -> str:
        return "\n\n".join(d.describe() for d in self.diffs)

    def assert_same(self) -> None:
        assert not self.diffs, f"{len(self.diffs)} difference(s):\n\n" + self.report()

    def close(self) -> None:
        self.ma.close()
        self.dc.close()
