"""JMAP Email writes: Email/set, Email/copy and Email/import (RFC 8621
§4.6-§4.8 over RFC 8620 §5.3/§5.4).

* update: ``keywords`` and ``mailboxIds`` as whole values or as patches
  (``keywords/$seen: true|null``, ``mailboxIds/M3: true|null``); every other
  property is immutable (invalidProperties).  Keywords are IMAP flags
  (``vocab``: ``$seen`` is ``\\Seen``), so an IMAP session sees the change.
* create: the structured Email (header properties in every parsed form,
  ``bodyStructure`` or ``textBody``/``htmlBody``/``attachments``,
  ``bodyValues``, attachments by blobId through ``jmap_blobs.read_blob``)
  is composed into RFC 5322 bytes by ``mime/compose.py`` and stored like an
  IMAP APPEND (``ingest.prepare`` + ``ops.append``).
* destroy: the email leaves every mailbox (IMAP sees EXPUNGE/VANISHED).
* Email/copy: copies between accounts only (RFC 8620 §5.4); a user owns one
  account today, so it answers invalidArguments / fromAccountNotFound.
* Email/import: a stored blob (a message) into mailboxes with keywords.

Every write is a store op (store/ops.py), so the change log, IMAP sessions
and the bus see it.  The create/update/destroy functions have the shape of
``jmap_standard.run_set``'s callbacks; a call with many objects is written a
few transactions at a time, not one per object (see "one transaction for
many", below), each object still succeeding or failing on its own.
"""
from __future__ import annotations

import itertools

import re
from typing import Any

from .. import ids, ingest, storeio, vocab
from ..mime import compose as C
from ..proto.jmap import capabilities as cap
from ..proto.jmap.errors import MethodError, set_error
from ..store import ops
from ..store.errors import Conflict, InvalidName, NotFound, OverQuota
from . import jmap_standard as std
from .jmap_api import OFFLOOP_REQUEST, Call, method
from .jmap_blobs import read_blob

EMAIL = "Email"
MAX_KEYWORDS = 100          # tooManyKeywords past this (per email)
MAX_MAILBOXES = 100         # tooManyMailboxes past this (per email)
MAX_PARTS = 200             # body parts in one created email
MAX_DEPTH = 16              # multipart nesting in one created email
# paths in one Email PatchObject: enough to remove every keyword and mailbox
# an email may have and add as many; more cannot be a useful patch and was
# a loop stall of ~0.5 s for an 8 MB one (each path checked and resolved)
MAX_PATCH_PATHS = 2 * (MAX_KEYWORDS + MAX_MAILBOXES)


SetError = std.SetError
run_set = std.run_set


def _set_err(type: str, description: str | None = None, **extra) -> Exception:
    return SetError(set_error(type, description, **extra))


def _err_dict(exc: Exception) -> dict:
    return exc.error


# --- small checks ------------------------------------------------------------------------

_KW_FORBIDDEN = frozenset('(){]%*"\\')


def check_keyword(k: Any) -> str | None:
    """A keyword as the store keeps it (lowercase), or None when RFC 8621
    §4.1.1 does not allow it (printable ASCII without ( ) { ] % * " \\).
    ``$deleted`` is refused too: it is IMAP's \\Deleted, which JMAP hides."""
    if not isinstance(k, str) or not k or len(k.encode()) > vocab.MAX_KEYWORD_BYTES:
        return None
    if any(not 0x21 <= ord(c) <= 0x7E or c in _KW_FORBIDDEN for c in k):
        return None
    low = k.lower()
    return None if low == vocab.DELETED else low


def _keywords_value(value: Any) -> set[str] | None:
    if not isinstance(value, dict):
        return None
    out = set()
    for k, v in value.items():
        kw = check_keyword(k)
        if kw is None or v is not True:
            return None
        out.add(kw)
    return out


def _mailbox_num(call: Call, key: Any) -> int | None:
    if not isinstance(key, str):
        return None
    r = call.resolve_id(key)
    return ids.parse("M", r) if r else None


def _mailboxes_value(call: Call, value: Any) -> set[int] | None:
    if not isinstance(value, dict):
        return None
    out = set()
    for k, v in value.items():
        n = _mailbox_num(call, k)
        if n is None or v is not True:
            return None
        out.add(n)
    return out


def _missing_mailboxes(call: Call, mbxs) -> list[int]:
    with call.view() as v:
        return [m for m in mbxs if v.mailbox(call.acc, m) is None]


def _invalid(props: list[str] | str, description: str) -> Exception:
    if isinstance(props, str):
        props = [props]
    return _set_err("invalidProperties", description, properties=props)


def _utc_date(s: Any) -> int | None:
    if not isinstance(s, str) or not s.endswith(("Z", "z")):
        return None
    try:
        return int(C.parse_date(s).timestamp())
    except C.ComposeError:
        return None


def _created(call: Call, eid: int) -> dict:
    with call.view() as v:
        rec = v.email(call.acc, eid)
    return {"id": ids.email_id(eid), "blobId": ids.blob_id(rec.blob),
            "threadId": ids.thread_id(rec.thread), "size": rec.size}


def _max_size(call: Call) -> int:
    cfg = call.ctx.cfg
    imap = getattr(cfg, "imap", None)
    return getattr(imap, "max_literal", 64 * 1024 * 1024)


def _quota(call: Call) -> int:
    store = getattr(call.ctx.cfg, "store", None)
    return getattr(store, "quota", 0) or 0


async def _prepare(call: Call, raw: bytes, received_at: int | None) -> ops.NewEmail:
    """Index RAW (off the event loop when big), as IMAP APPEND does."""
    if len(raw) > _max_size(call):
        raise _set_err("tooLarge", f"the message is larger than {_max_size(call)} octets")
    if len(raw) >= storeio.OFFLOOP_BYTES:
        return await storeio.cpu(ingest.prepare, raw, received_at)
    return ingest.prepare(raw, received_at)


def _appended(new: ops.NewEmail, res) -> dict:
    """One result of ops.append_each -> the created properties (or SetError)."""
    if isinstance(res, OverQuota):
        raise _set_err("overQuota", str(res))
    if isinstance(res, (NotFound, Conflict)):
        raise _invalid("mailboxIds", "a mailbox does not exist")
    return {"id": ids.email_id(res.email), "blobId": ids.blob_id(new.blob),
            "threadId": ids.thread_id(res.thread), "size": len(new.raw)}


async def _append(call: Call, items: list[tuple[set[int], ops.NewEmail, set[str]]]) -> list:
    try:
        return await call.write(ops.append_each, call.acc,
                                [(sorted(m), new, sorted(k)) for m, new, k in items],
                                _quota(call))
    except InvalidName as exc:      # (keywords are checked before: not expected)
        raise _invalid("keywords", str(exc)) from None


APPEND_BATCH_BYTES = 16 * 1024 * 1024   # messages per store transaction, at most


class _Appender:
    """Stores prepared messages a transaction at a time (``ops.append_each``)
    instead of one each; OUT: key -> created properties or SetError."""

    def __init__(self, call: Call):
        self.call = call
        self.pending: list[tuple[str, set[int], ops.NewEmail, set[str]]] = []
        self.size = 0
        self.out: dict[str, Any] = {}

    async def add(self, key: str, mbxs: set[int], new: ops.NewEmail, kws: set[str]) -> None:
        self.pending.append((key, mbxs, new, kws))
        self.size += len(new.raw)
        if self.size >= APPEND_BATCH_BYTES:     # bounded memory
            await self.flush()

    async def flush(self) -> None:
        if not self.pending:
            return
        results = await _append(self.call, [(m, new, k) for _, m, new, k in self.pending])
        for (key, _, new, _), res in zip(self.pending, results):
            try:
                self.out[key] = _appended(new, res)
            except SetError as exc:
                self.out[key] = exc
        self.pending.clear()
        self.size = 0


def _check_placement(call: Call, obj: dict, *, required: bool = True
                     ) -> tuple[set[int], set[str]]:
    """mailboxIds and keywords of a create/copy/import object."""
    mb_raw = obj.get("mailboxIds")
    # counted before each entry is checked (each is resolved and looked up)
    if isinstance(mb_raw, dict) and len(mb_raw) > MAX_MAILBOXES:
        raise _set_err("tooManyMailboxes", f"at most {MAX_MAILBOXES} mailboxes per email")
    if isinstance(obj.get("keywords"), dict) and len(obj["keywords"]) > MAX_KEYWORDS:
        raise _set_err("tooManyKeywords", f"at most {MAX_KEYWORDS} keywords per email")
    mbxs = _mailboxes_value(call, mb_raw)
    if mbxs is None or (required and not mbxs):
        raise _invalid("mailboxIds", "mailboxIds must map existing mailbox ids to true, "
                       "at least one")
    if len(mbxs) > MAX_MAILBOXES:
        raise _set_err("tooManyMailboxes", f"at most {MAX_MAILBOXES} mailboxes per email")
    if _missing_mailboxes(call, mbxs):
        raise _invalid("mailboxIds", "a mailbox does not exist")
    kws: set[str] = set()
    if obj.get("keywords") is not None:
        got = _keywords_value(obj["keywords"])
        if got is None:
            raise _invalid("keywords", "keywords must map valid keywords to true")
        kws = got
    if len(kws) > MAX_KEYWORDS:
        raise _set_err("tooManyKeywords", f"at most {MAX_KEYWORDS} keywords per email")
    return mbxs, kws


# --- update --------------------------------------------------------------------------------

def _unescape(p: str) -> str:
    return p.replace("~1", "/").replace("~0", "~")


def _too_many_paths(patch: dict) -> Exception:
    """The error for a patch of more than MAX_PATCH_PATHS paths, from its
    first ones (constant work): tooManyKeywords / tooManyMailboxes (RFC 8621
    §4.6) when they are mostly keywords / mailboxIds paths, else invalidPatch."""
    heads = [p.partition("/")[0] if isinstance(p, str) else ""
             for p in itertools.islice(patch, MAX_PATCH_PATHS + 1)]
    kw, mb = heads.count("keywords"), heads.count("mailboxIds")
    why = f"at most {MAX_PATCH_PATHS} paths in one patch"
    if kw > len(heads) // 2:
        return _set_err("tooManyKeywords", why)
    if mb > len(heads) // 2:
        return _set_err("tooManyMailboxes", why)
    return _set_err("invalidPatch", why)


def parse_patch(call: Call, oid: str, patch: dict) -> tuple[int, dict]:
    """An Email PatchObject -> (email number, ops.update_email arguments);
    raises SetError (notFound, invalidPatch, invalidProperties)."""
    eid = ids.parse("E", oid)
    if eid is None:
        raise _set_err("notFound")
    if len(patch) > MAX_PATCH_PATHS:
        raise _too_many_paths(patch)
    for head, most, err in (("keywords", MAX_KEYWORDS, "tooManyKeywords"),
                            ("mailboxIds", MAX_MAILBOXES, "tooManyMailboxes")):
        whole = patch.get(head)     # a whole value: counted before each entry is checked
        if isinstance(whole, dict) and len(whole) > most:
            raise _set_err(err, f"at most {most} {head} per email")
    kw_whole = mb_whole = None
    kw_add, kw_rm, mb_add, mb_rm = set(), set(), set(), set()
    bad: list[str] = []
    partial: set[str] = set()
    for path, value in patch.items():
        if not isinstance(path, str) or not path:
            raise _set_err("invalidPatch", "patch keys are JSON pointers")
        head, sep, rest = path.partition("/")
        if head not in ("keywords", "mailboxIds"):
            bad.append(head)
            continue
        if not sep:
            if head == "keywords":
                kw_whole = _keywords_value(value)
                if kw_whole is None:
                    bad.append("keywords")
            else:
                mb_whole = _mailboxes_value(call, value)
                if mb_whole is None:
                    bad.append("mailboxIds")
            continue
        if "/" in rest:
            raise _set_err("invalidPatch", f"{path} goes below a keyword or mailbox id")
        partial.add(head)
        if value is not None and value is not True:
            bad.append(path)
            continue
        if head == "keywords":
            kw = check_keyword(_unescape(rest))
            if kw is None:
                bad.append(path)
            else:
                (kw_add if value is True else kw_rm).add(kw)
        else:
            n = _mailbox_num(call, _unescape(rest))
            if n is None:
                bad.append(path)
            else:
                (mb_add if value is True else mb_rm).add(n)
    if ("keywords" in partial and "keywords" in patch) or \
            ("mailboxIds" in partial and "mailboxIds" in patch):
        raise _set_err("invalidPatch", "a property is patched both whole and in part")
    if bad:
        raise _invalid(bad, "only keywords and mailboxIds can change, to valid values")
    return eid, dict(keywords=kw_whole, add_keywords=sorted(kw_add),
                     remove_keywords=sorted(kw_rm), mailboxes=mb_whole,
                     add_mailboxes=sorted(mb_add), remove_mailboxes=sorted(mb_rm),
                     max_keywords=MAX_KEYWORDS, max_mailboxes=MAX_MAILBOXES)


def _update_error(exc: Exception) -> Exception:
    """A store error of ops.update_email -> the SetError it is."""
    if isinstance(exc, ops.NoSuchMailbox):
        return _invalid("mailboxIds", "a mailbox does not exist")
    if isinstance(exc, NotFound):
        return _set_err("notFound")
    if isinstance(exc, ops.TooMany):
        return _set_err("tooManyKeywords" if exc.what == "keywords" else "tooManyMailboxes",
                        str(exc))
    if isinstance(exc, Conflict):
        return _invalid("mailboxIds", str(exc))
    if isinstance(exc, InvalidName):
        return _invalid("keywords", str(exc))
    return exc


async def update_email(call: Call, oid: str, patch: dict) -> dict | None:
    done = _batched(call, "update", oid)
    if done is not _NOT_BATCHED:
        if isinstance(done, Exception):
            raise done
        return None
    eid, change = parse_patch(call, oid, patch)
    with call.view() as v:
        if v.email(call.acc, eid) is None:
            raise _set_err("notFound")
    if _missing_mailboxes(call, (change["mailboxes"] or set()) | set(change["add_mailboxes"])):
        raise _invalid("mailboxIds", "a mailbox does not exist")
    try:
        await call.write(ops.update_email, call.acc, eid, **change)
    except (NotFound, Conflict, InvalidName) as exc:
        raise _update_error(exc) from None
    return None


# --- destroy -------------------------------------------------------------------------------

async def destroy_email(call: Call, oid: str) -> None:
    done = _batched(call, "destroy", oid)
    if done is not _NOT_BATCHED:
        if isinstance(done, Exception):
            raise done
        return
    eid = ids.parse("E", oid)
    if eid is None:
        raise _set_err("notFound")
    done = await call.write(ops.destroy_emails, call.acc, [eid])
    if not done:
        raise _set_err("notFound")


# --- create: the Email object -> compose ------------------------------------------------------

# RFC 8621 §4.1.2: parsed forms allowed per known header field (any form on others)
_FORMS_FOR = {
    "Addresses": {"from", "sender", "reply-to", "to", "cc", "bcc", "resent-from",
                  "resent-sender", "resent-reply-to", "resent-to", "resent-cc", "resent-bcc"},
    "Text": {"subject", "comments", "keywords", "list-id"},
    "MessageIds": {"message-id", "in-reply-to", "references", "resent-message-id"},
    "Date": {"date", "resent-date"},
    "URLs": {"list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
             "list-archive"},
}
_FORMS_FOR["GroupedAddresses"] = _FORMS_FOR["Addresses"]
_KNOWN_FIELDS = set().union(*_FORMS_FOR.values()) | {"return-path", "received"}
_FORMS = ("Raw", "Text", "Addresses", "GroupedAddresses", "MessageIds", "Date", "URLs")

# convenience property -> (header field, form)
_CONVENIENCE = {
    "messageId": ("Message-ID", "MessageIds"), "inReplyTo": ("In-Reply-To", "MessageIds"),
    "references": ("References", "MessageIds"), "sender": ("Sender", "Addresses"),
    "from": ("From", "Addresses"), "to": ("To", "Addresses"), "cc": ("Cc", "Addresses"),
    "bcc": ("Bcc", "Addresses"), "replyTo": ("Reply-To", "Addresses"),
    "subject": ("Subject", "Text"), "sentAt": ("Date", "Date"),
}
_HEADER_ORDER = ("sentAt", "from", "sender", "replyTo", "to", "cc", "bcc", "subject",
                 "messageId", "inReplyTo", "references")
_EMAIL_CREATE = {"mailboxIds", "keywords", "receivedAt", "bodyStructure", "textBody",
                 "htmlBody", "attachments", "bodyValues"} | set(_CONVENIENCE)
_SERVER_SET = {"id", "blobId", "threadId", "size", "preview", "hasAttachment", "headers"}
_PART_PROPS = {"partId", "blobId", "type", "charset", "disposition", "cid", "language",
               "location", "name", "subParts"}
# part headers the part's own properties write
_PART_OWN_HEADERS = {"content-type", "content-disposition", "content-id", "content-language",
                     "content-location", "content-transfer-encoding"}
_FIELD_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")


class _Bad(Exception):
    """One create error: a SetError dict."""

    def __init__(self, err: dict):
        super().__init__(err["type"])
        self.err = err


def _bad(prop: str, description: str) -> _Bad:
    return _Bad(set_error("invalidProperties", description, properties=[prop]))


def parse_header_prop(prop: str) -> tuple[str, str, bool] | None:
    """'header:From:asAddresses:all' -> ("From", "Addresses", True)."""
    parts = prop.split(":")
    if len(parts) < 2 or parts[0] != "header" or not _FIELD_NAME.match(parts[1]):
        return None
    name, rest = parts[1], parts[2:]
    form, is_all = "Raw", False
    if rest and rest[0].startswith("as"):
        form = rest.pop(0)[2:]
        if form not in _FORMS:
            return None
    if rest and rest[0] == "all":
        is_all = True
        rest.pop(0)
    if rest:
        return None
    return name, form, is_all


def _form_allowed(name: str, form: str) -> bool:
    low = name.lower()
    if form == "Raw" or low not in _KNOWN_FIELDS:
        return True
    return low in _FORMS_FOR.get(form, ())


def _addr_list(v: Any) -> list[tuple[str | None, str]]:
    if not isinstance(v, list):
        raise C.ComposeError("addresses must be a list")
    out = []
    for a in v:
        if not isinstance(a, dict) or not isinstance(a.get("email"), str) \
                or not isinstance(a.get("name"), (str, type(None))) \
                or set(a) - {"name", "email"}:
            raise C.ComposeError("an address is {name, email}")
        out.append((a.get("name"), a["email"]))
    return out


def _format(form: str, v: Any) -> str | None:
    """One header value in FORM -> its formatted text (None: no header)."""
    if v is None:
        return None
    if form == "Raw":
        if not isinstance(v, str):
            raise C.ComposeError("a Raw value is a string")
        return C.format_raw(v.lstrip(" \t") if "\n" not in v else v)
    if form == "Text":
        if not isinstance(v, str):
            raise C.ComposeError("a Text value is a string")
        return C.format_text(v.strip())
    if form == "Addresses":
        return C.format_addresses(_addr_list(v))
    if form == "GroupedAddresses":
        if not isinstance(v, list):
            raise C.ComposeError("groups must be a list")
        groups = []
        for g in v:
            if not isinstance(g, dict) or not isinstance(g.get("name"), (str, type(None))):
                raise C.ComposeError("a group is {name, addresses}")
            groups.append((g.get("name"), _addr_list(g.get("addresses"))))
        return C.format_grouped(groups)
    if form == "MessageIds":
        if not isinstance(v, list):
            raise C.ComposeError("message ids are a list")
        return C.format_message_ids(v)
    if form == "Date":
        return C.format_date(v)
    if form == "URLs":
        if not isinstance(v, list):
            raise C.ComposeError("URLs are a list")
        return C.format_urls(v)
    raise C.ComposeError(form)


def _header_props(obj: dict, prop_name: str, allow_content: bool
                  ) -> tuple[list[tuple[str, str]], set[str]]:
    """The header:* properties of OBJ -> ([(name, formatted value)], {lower names})."""
    out, names = [], set()
    for prop, v in obj.items():
        if not prop.startswith("header:"):
            continue
        parsed = parse_header_prop(prop)
        if parsed is None:
            raise _bad(prop_name or prop, f"not a header property: {prop}")
        name, form, is_all = parsed
        low = name.lower()
        if low in names:
            raise _bad(prop_name or prop, f"header {name} is given twice")
        if not _form_allowed(name, form):
            raise _bad(prop_name or prop, f"header {name} cannot be set as {form}")
        if low.startswith("content-") and not allow_content:
            raise _bad(prop_name or prop, "Content-* header fields belong on body parts")
        names.add(low)
        values = v if is_all else [v]
        if is_all and not isinstance(v, list):
            raise _bad(prop_name or prop, f"{prop} takes a list")
        try:
            for one in values:
                text = _format(form, one)
                if text is not None:
                    out.append((name, text))
        except C.ComposeError as exc:
            raise _bad(prop_name or prop, str(exc)) from None
    return out, names


class _Builder:
    """EmailBodyPart objects of a create -> compose.BodyPart, blobs read."""

    def __init__(self, call: Call, view, body_values: dict):
        self.call = call
        self.view = view
        self.values = body_values
        self.missing: list[str] = []
        self.count = 0
        self.size = 0
        self.limit = _max_size(call)

    def _add_size(self, n: int) -> None:
        """Bounded memory: stop reading blobs once the message is too big."""
        self.size += n
        if self.size > self.limit:
            raise _Bad(set_error("tooLarge", f"the message would be over {self.limit} octets"))

    def part(self, obj: Any, prop: str, depth: int = 0, root_names: set[str] = frozenset()
             ) -> C.BodyPart:
        if not isinstance(obj, dict):
            raise _bad(prop, "a body part is an object")
        self.count += 1
        if self.count > MAX_PARTS or depth > MAX_DEPTH:
            raise _bad(prop, f"at most {MAX_PARTS} body parts, {MAX_DEPTH} deep")
        for k in obj:
            if k in ("size", "headers"):
                raise _bad(prop, f"{k} cannot be set on a body part")
            if k not in _PART_PROPS and not k.startswith("header:"):
                raise _bad(prop, f"unknown body part property {k}")
        headers, names = _header_props(obj, prop, allow_content=True)
        if names & _PART_OWN_HEADERS:
            raise _bad(prop, "Content-Type/-Disposition/-ID/-Language/-Location/"
                             "-Transfer-Encoding come from the part's properties")
        if names & root_names:
            raise _bad(prop, "a header field is given both on the Email and its bodyStructure")
        for k in ("type", "charset", "disposition", "cid", "location", "name"):
            if obj.get(k) is not None and not isinstance(obj[k], str):
                raise _bad(prop, f"{k} must be a string")
        lang = obj.get("language")
        if lang is not None and (not isinstance(lang, list)
                                 or not all(isinstance(x, str) for x in lang)):
            raise _bad(prop, "language must be a list of strings")
        ctype = (obj.get("type") or "").lower()
        sub = obj.get("subParts")
        pid, bid = obj.get("partId"), obj.get("blobId")
        common = dict(name=obj.get("name"), disposition=obj.get("disposition"),
                      cid=obj.get("cid"), language=lang, location=obj.get("location"),
                      headers=headers)
        if ctype.startswith("multipart/") or sub is not None:
            if not ctype.startswith("multipart/") or not isinstance(sub, list) \
                    or pid is not None or bid is not None or obj.get("charset") is not None:
                raise _bad(prop, "a multipart part has a multipart type and subParts only")
            parts = [self.part(s, prop, depth + 1) for s in sub]
            return C.BodyPart(ctype, parts=parts, **common)
        if (pid is None) == (bid is None):
            raise _bad(prop, "a body part has exactly one of partId and blobId")
        if pid is not None:
            if obj.get("charset") is not None:
                raise _bad(prop, "charset cannot be given with partId")
            bv = self.values.get(pid) if isinstance(pid, str) else None
            if not isinstance(bv, dict) or not isinstance(bv.get("value"), str):
                raise _bad(prop, f"partId {pid!r} has no bodyValues entry")
            text = bv["value"].replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:
                raise _bad("bodyValues", "a body value is not valid Unicode") from None
            self._add_size(len(data))
            return C.BodyPart(ctype or "text/plain", data, charset="utf-8", **common)
        if not isinstance(bid, str):
            raise _bad(prop, "blobId must be a string")
        data = read_blob(self.view, self.call.acc, bid)
        if data is None:
            self.missing.append(bid)
            data = b""
        self._add_size(len(data))
        return C.BodyPart(ctype or "application/octet-stream", data,
                          charset=obj.get("charset"), **common)


def _structure(b: _Builder, obj: dict, root_names: set[str]) -> C.BodyPart:
    if obj.get("bodyStructure") is not None:
        for k in ("textBody", "htmlBody", "attachments"):
            if obj.get(k) is not None:
                raise _bad(k, "bodyStructure excludes textBody, htmlBody and attachments")
        return b.part(obj["bodyStructure"], "bodyStructure", 0, root_names)
    text = html = None
    for k, want in (("textBody", "text/plain"), ("htmlBody", "text/html")):
        v = obj.get(k)
        if v is None:
            continue
        if not isinstance(v, list) or len(v) != 1 or not isinstance(v[0], dict) \
                or (v[0].get("type") or want).lower() != want:
            raise _bad(k, f"{k} is one body part of type {want}")
        p = b.part({**v[0], "type": want}, k)
        if k == "textBody":
            text = p
        else:
            html = p
    atts = obj.get("attachments") or []
    if not isinstance(atts, list):
        raise _bad("attachments", "attachments is a list")
    att_parts = [(a, b.part(a, "attachments")) for a in atts]
    inline = [p for a, p in att_parts
              if html is not None and isinstance(a, dict) and a.get("cid")
              and (a.get("disposition") or "").lower() == "inline"]
    others = [p for _, p in att_parts if not any(p is q for q in inline)]
    htmlish = C.BodyPart("multipart/related", parts=[html] + inline) if inline else html
    if text is not None and htmlish is not None:
        core = C.BodyPart("multipart/alternative", parts=[text, htmlish])
    else:
        core = text or htmlish
    if others:
        kids = ([core] if core is not None else []) + others
        return kids[0] if len(kids) == 1 else C.BodyPart("multipart/mixed", parts=kids)
    return core or C.BodyPart("text/plain", b"", charset="utf-8")


def plan_message(call: Call, obj: dict) -> tuple[list[tuple[str, str]], C.BodyPart, int]:
    """The create object OBJ -> (header fields, body tree, content octets),
    blobs read and every rule of §4.6 checked; raises _Bad."""
    bad = sorted(k for k in obj if k in _SERVER_SET
                 or (k not in _EMAIL_CREATE and not k.startswith("header:")))
    if bad:
        raise _Bad(set_error("invalidProperties", "these properties cannot be set on create",
                             properties=bad))
    headers: list[tuple[str, str]] = []
    names: set[str] = set()
    for prop in _HEADER_ORDER:
        v = obj.get(prop)
        if v is None:
            continue
        field, form = _CONVENIENCE[prop]
        try:
            text = _format(form, v)
        except C.ComposeError as exc:
            raise _bad(prop, str(exc)) from None
        names.add(field.lower())
        if text is not None:
            headers.append((field, text))
    extra, extra_names = _header_props(obj, "", allow_content=False)
    dup = names & extra_names
    if dup:
        conv = {f.lower(): p for p, (f, _) in _CONVENIENCE.items()}
        raise _bad(conv[sorted(dup)[0]], "a header field is given twice")
    headers += extra
    names |= extra_names
    bv = obj.get("bodyValues") or {}
    if not isinstance(bv, dict):
        raise _bad("bodyValues", "bodyValues is an object")
    for k, v in bv.items():
        if not isinstance(v, dict) or not isinstance(v.get("value"), str) \
                or v.get("isEncodingProblem") or v.get("isTruncated") \
                or set(v) - {"value", "isEncodingProblem", "isTruncated"}:
            raise _bad("bodyValues", f"bodyValues[{k!r}] is {{value}} only")
    with call.view() as v:
        b = _Builder(call, v, bv)
        root = _structure(b, obj, names)
    if b.missing:
        raise _Bad(set_error("blobNotFound", "blobs not found", notFound=b.missing))
    return headers, root, b.size


def build_message(call: Call, obj: dict) -> bytes:
    """The create object OBJ -> RFC 5322 bytes (on the caller's thread)."""
    headers, root, _ = plan_message(call, obj)
    return _compose(call, headers, root)


def _compose(call: Call, headers, root) -> bytes:
    domain = getattr(call.ctx.cfg, "hostname", None) or "localhost"
    try:
        return C.compose(headers, root, domain=domain)
    except C.ComposeError as exc:
        raise _Bad(set_error("invalidProperties", str(exc))) from None


async def _prepare_create(call: Call, obj: dict) -> tuple[set[int], set[str], ops.NewEmail]:
    mbxs, kws = _check_placement(call, obj)
    received = None
    if obj.get("receivedAt") is not None:
        received = _utc_date(obj["receivedAt"])
        if received is None:
            raise _invalid("receivedAt", "receivedAt is a UTCDate")
    try:
        # off the loop: big header fields, or blobs to read (a part blob is
        # decoded: 0.1 s for a 50 MB message's base64 attachment)
        if call.ctx.request_bytes >= OFFLOOP_REQUEST or obj.get("attachments") \
                or obj.get("bodyStructure"):
            raw = await storeio.cpu(build_message, call, obj)
        else:
            headers, root, size = plan_message(call, obj)
            if size >= storeio.OFFLOOP_BYTES:     # base64 of big attachments: off the loop
                raw = await storeio.cpu(_compose, call, headers, root)
            else:
                raw = _compose(call, headers, root)
    except _Bad as exc:
        raise SetError(exc.err) from None
    return mbxs, kws, await _prepare(call, raw, received)


async def create_email(call: Call, cid: str, obj: dict) -> dict:
    done = _batched(call, "create", cid)
    if done is not _NOT_BATCHED:
        if isinstance(done, Exception):
            raise done
        return done
    mbxs, kws, new = await _prepare_create(call, obj)
    [res] = await _append(call, [(mbxs, new, kws)])
    return _appended(new, res)


# --- the methods -----------------------------------------------------------------------------

# --- one transaction for many creates / updates / destroys ----------------------------------
# run_set calls create/update/destroy once per object, and one store write
# each is one durable commit each: marking 500 emails read would take 500
# commits.  So Email/set first applies, in run_set's order, the creates (a
# transaction per APPEND_BATCH_BYTES, ops.append_each), then the updates and
# destroys of existing emails (plain ids, not ids created by this call) in
# one transaction (ops.update_emails); every object is checked before it
# changes and fails on its own.  Then run_set runs as always and the
# callbacks answer from what the batch did.  Destroys join the batch only
# when the call creates nothing (a create may attach a blob of an email the
# call destroys; RFC 8620 §5.3 creates first).

_NOT_BATCHED = object()
BATCH_MIN = 2           # fewer objects than this: the plain per-object path


def _batched(call: Call, what: str, oid: str):
    outcomes = getattr(call, "_email_batch", None)
    if outcomes is None:
        return _NOT_BATCHED
    return outcomes[what].get(oid, _NOT_BATCHED)


async def _run_batch(call: Call, creates: dict, updates: dict, destroys: list) -> None:
    out: dict[str, dict] = {"update": {}, "destroy": {}, "create": {}}
    if len(creates) >= BATCH_MIN:
        app = _Appender(call)
        for cid, obj in creates.items():
            if not isinstance(obj, dict):
                continue                   # run_set's own answer
            try:
                mbxs, kws, new = await _prepare_create(call, obj)
            except SetError as exc:
                out["create"][cid] = exc
                continue
            await app.add(cid, mbxs, new, kws)
        await app.flush()
        out["create"].update(app.out)

    def resolve(key: str) -> str | None:
        """KEY as run_set will resolve it once the creates are registered."""
        if not key.startswith("#"):
            return key
        made = out["create"].get(key[1:])
        if isinstance(made, dict):
            return made["id"]
        return None if key[1:] in creates else call.resolve_id(key)

    doomed = {resolve(i) for i in destroys}

    def parse_all() -> tuple[list[tuple[int, dict]], list[str]]:
        items: list[tuple[int, dict]] = []
        keys: list[str] = []
        for key, patch in updates.items():
            rid = resolve(key)
            if rid is None or rid in doomed or not isinstance(patch, dict):
                continue                   # run_set's own answer
            try:
                eid, change = parse_patch(call, rid, patch)
            except SetError as exc:
                out["update"][rid] = exc
                continue
            items.append((eid, change))
            keys.append(rid)
        return items, keys

    # up to maxObjectsInSet patches of MAX_PATCH_PATHS paths each: 0.4 s of
    # checking for a 9 MB request, in the worker pool (this call's task
    # waits; nothing else touches CALL or OUT meanwhile)
    items, keys = await storeio.cpu(parse_all)
    gone: list[int] = []
    gone_keys: list[str] = []
    if not creates:
        for key in destroys:
            rid = resolve(key)
            if rid is None or rid in gone_keys or rid in out["destroy"]:
                continue
            eid = ids.parse("E", rid)
            if eid is None:
                out["destroy"][rid] = _set_err("notFound")
            else:
                gone.append(eid)
                gone_keys.append(rid)
    if items or gone:
        results, destroyed = await call.write(ops.update_emails, call.acc, items, gone)
        for key, res in zip(keys, results):
            out["update"][key] = _update_error(res) if res is not None else None
        for key, eid in zip(gone_keys, gone):
            out["destroy"][key] = None if eid in destroyed else _set_err("notFound")
    call._email_batch = out


@method("Email/set", cap.MAIL, args=("ifInState", "create", "update", "destroy"))
async def email_set(call: Call) -> dict:
    creates, updates, destroys = std.set_sizes(call)
    if max(len(creates), len(updates) + (0 if creates else len(destroys))) < BATCH_MIN \
            or not all(isinstance(i, str) for i in destroys):
        # (a malformed call is refused whole by run_set: nothing may be written first)
        return await run_set(call, EMAIL, create=create_email, update=update_email,
                             destroy=destroy_email)
    old = std.check_if_in_state(call, EMAIL)
    await _run_batch(call, creates, updates, destroys)
    call.args = {k: v for k, v in call.args.items() if k != "ifInState"}   # checked above
    try:
        out = await run_set(call, EMAIL, create=create_email, update=update_email,
                            destroy=destroy_email)
    finally:
        call._email_batch = None
    out["oldState"] = old
    return out


@method("Email/copy", cap.MAIL,
        args=("fromAccountId", "ifFromInState", "ifInState", "create",
              "onSuccessDestroyOriginal", "destroyFromIfInState"))
async def email_copy(call: Call) -> dict:
    """RFC 8621 §4.7 / RFC 8620 §5.4: copies between two accounts.

    The target account must differ from the source ("MUST be different to
    the fromAccountId", §5.4), and a user owns exactly one account today, so
    there is nothing a copy can do yet: the own account as the source is
    invalidArguments (within one account a client adds mailboxIds with
    Email/set), any other is fromAccountNotFound.  Email/copy is not a
    reason to advertise anything more; it answers per the RFC.
    """
    me = ids.account_id(call.acc)
    src = call.args.get("fromAccountId")
    if not isinstance(src, str):
        raise std.invalid("'fromAccountId' must be an account id")
    if src == me:
        raise std.invalid("'accountId' must differ from 'fromAccountId' (RFC 8620 §5.4); "
                          "use Email/set mailboxIds within one account")
    raise MethodError("fromAccountNotFound")


_IMPORT_PROPS = {"blobId", "mailboxIds", "keywords", "receivedAt"}
_FIELD_LINE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+[ \t]*:")


def looks_like_message(raw: bytes) -> bool:
    """Enough of RFC 5322 to store: starts with a header field, no NUL."""
    return bool(raw) and b"\0" not in raw and _FIELD_LINE.match(raw) is not None


@method("Email/import", cap.MAIL, args=("ifInState", "emails"))
async def email_import(call: Call) -> dict:
    old = std.check_if_in_state(call, EMAIL)
    emails = call.args.get("emails")
    if not isinstance(emails, dict):
        raise std.invalid("'emails' must be an object")
    if len(emails) > call.ctx.limits.max_objects_in_set:
        raise MethodError("requestTooLarge",
                          f"at most {call.ctx.limits.max_objects_in_set} emails per import")
    created, not_created = {}, {}
    # a transaction per APPEND_BATCH_BYTES of messages, not one per message;
    # each message still succeeds or fails on its own (ops.append_each)
    app = _Appender(call)
    for cid, obj in emails.items():
        try:
            mbxs, kws, new = await _import_one(call, obj)
        except SetError as exc:
            not_created[cid] = _err_dict(exc)
            continue
        await app.add(cid, mbxs, new, kws)
    await app.flush()
    for cid, res in app.out.items():
        if isinstance(res, Exception):
            not_created[cid] = _err_dict(res)
        else:
            created[cid] = res
            call.created_ids[cid] = res["id"]
    return {"accountId": ids.account_id(call.acc), "oldState": old,
            "newState": std.state(call, EMAIL), "created": created or None,
            "notCreated": not_created or None}


async def _import_one(call: Call, obj: Any) -> tuple[set[int], set[str], ops.NewEmail]:
    if not isinstance(obj, dict):
        raise _invalid([], "not an object")
    bad = sorted(k for k in obj if k not in _IMPORT_PROPS)
    if bad:
        raise _invalid(bad, "unknown EmailImport properties")
    bid = obj.get("blobId")
    if not isinstance(bid, str):
        raise _invalid("blobId", "blobId is required")
    mbxs, kws = _check_placement(call, obj)
    received = None
    if obj.get("receivedAt") is not None:
        received = _utc_date(obj["receivedAt"])
        if received is None:
            raise _invalid("receivedAt", "receivedAt is a UTCDate")
    bid = call.resolve_id(bid) or bid
    if ids.parse_part_blob(bid) is not None:    # a part: decoded, in the worker pool
        raw = await storeio.read(call.ctx.store, read_blob, call.acc, bid)
    else:
        with call.view() as v:
            raw = read_blob(v, call.acc, bid)
    if raw is None:
        # RFC 8621 §4.8: an id not found is invalidProperties
        raise _invalid("blobId", "no such blob")
    if not looks_like_message(raw):
        raise _set_err("invalidEmail", "the blob is not an RFC 5322 message")
    return mbxs, kws, await _prepare(call, raw, received)


__all__ = ["email_set", "email_copy", "email_import", "create_email", "update_email",
           "destroy_email", "build_message", "plan_message", "check_keyword", "parse_header_prop",
           "looks_like_message"]
