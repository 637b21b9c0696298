"""ActiveSync SendMail, SmartReply and SmartForward (MS-ASCMD 2.2.1.17,
2.2.1.20, 2.2.1.19): mail sent from a phone.

The request
* 12.x: the body is the message itself (``Content-Type: message/rfc822``,
  ``raw_body``); the query carries ``SaveInSent=T``, and for the Smart
  commands ``ItemId`` + ``CollectionId`` (or ``LongId``).
* 14.0+: WBXML ``ComposeMail:SendMail|SmartReply|SmartForward`` with
  ``ClientId``, ``SaveInSentItems`` (presence), ``Mime`` (opaque or a
  string), ``AccountId``, and for the Smart commands ``Source`` (``FolderId``
  + ``ItemId``, or ``LongId``; ``InstanceId`` is a calendar occurrence and
  ignored) and ``ReplaceMime``.
  Either form is accepted at every version (a body that is not WBXML is
  read as MIME with the query's parameters).

What is sent (eas_compose.py builds it): the phone's MIME with Date,
Message-ID and From added when missing; for SmartReply / SmartForward,
unless ``ReplaceMime`` is present, the original (the store's copy of
``ItemId``, "E42") quoted below the new text (reply) or attached whole as
message/rfc822 (forward).  12.x has no ReplaceMime: the original is always
added.  The envelope (mailaccess/outbound/envelope.py, as JMAP's
EmailSubmission derives it): MAIL FROM is the Sender, else the From
address; the recipients are To, Cc and Bcc.  Bcc is removed from the bytes
that are sent and kept in the copy saved to Sent (the sender's own record,
as Exchange keeps it).

One durable write does it all: the outbound queue entry (store/sending.py
``enqueue``; server/outbound.py sends it, relaying remote recipients and
delivering local ones), the copy in the Sent-role mailbox with ``$seen``
(when SaveInSent is asked; a full quota skips the copy, not the sending),
``$answered`` / ``$forwarded`` on the original (vocab.py; JMAP clients set
the same after a reply or forward), and the device's ClientId.  The answer
is an empty 200 (MS-ASCMD 2.2.3.177.14: "If the command succeeds, no XML
body is returned").

Failures (MS-ASCMD 2.2.2 common status codes, in a ``Status`` under the
command's root for 14.0+; 12.x has no Status element there and gets HTTP
500, as Exchange 2007 answered a failed SendMail):
* 101 InvalidContent: a WBXML body that is not this command's
  ComposeMail element, or a ClientId that is not 1-40 characters.
* 107 InvalidMIME: no Mime, or a message that does not start with a header.
* 118 MessagePreviouslySent: a ClientId this device already sent (a phone
  repeating a request whose answer it lost; the message is not sent twice).
  The device's last 200 ClientIds are kept, in device state ``sm``.
* 119 MessageHasNoRecipient; 116 MessageRecipientUnresolved: a recipient
  that is not a valid address; 115 SendQuotaExceeded: more than
  ``[smtp] max_recipients``.
* 122 AttachmentIsTooLarge: the message (with the original attached) is
  over ``[smtp] max_size``.  The protocol has no "message too large" code;
  what makes a message too large is almost always its attachments.
* 130 AccessDenied: a From (or Sender) that is not one of the account's
  own addresses (the addresses JMAP identities may use,
  outbound/addresses.py), or sending disabled (``[smtp] send_enabled``).
* 150 ItemNotFound: the Smart commands' original does not exist.
* 166 InvalidAccountId: an AccountId (the account has no other accounts:
  UserInformation lists none with an AccountId).
* 110 ServerError: the store refused the write (111 when it is full: retry).

Device state: ``sm`` (JSON list of the ClientIds sent, newest last).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from .. import ingest, storeio, vocab
from ..outbound import addresses, envelope as env
from ..proto.eas.wbxml import E, Element
from ..store import ops, sending
from ..store.errors import OverQuota, StoreError, StoreFullError
from . import eas_compose, eas_item
from .eas_command import Command
from .http_messages import Response, problem

log = logging.getLogger("mailaccess.eas")

STATE_KEY = "sm"
MAX_CLIENT_IDS = 200

# MS-ASCMD 2.2.2 common status codes used here
OK = 1
INVALID_CONTENT = 101
INVALID_MIME = 107
SERVER_ERROR = 110
SERVER_ERROR_RETRY_LATER = 111
SEND_QUOTA_EXCEEDED = 115
RECIPIENT_UNRESOLVED = 116
PREVIOUSLY_SENT = 118
NO_RECIPIENT = 119
ATTACHMENT_TOO_LARGE = 122
ACCESS_DENIED = 130
ITEM_NOT_FOUND = 150
INVALID_ACCOUNT_ID = 166

REPLY, FORWARD, SEND = "SmartReply", "SmartForward", "SendMail"


@dataclass
class Compose:
    """One request, whatever its form."""
    kind: str
    mime: bytes
    client_id: str | None = None
    save: bool = False
    item_id: str | None = None
    folder_id: str | None = None
    long_id: str | None = None
    replace: bool = False
    account_id: str | None = None


class Refused(Exception):
    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


def parse(ctx, body: Element | None, kind: str) -> Compose:
    """The request as a Compose; Refused(107) when it has no message."""
    if body is None:
        raw = ctx.http.body if ctx.http is not None else b""
        p = ctx.req.params
        return Compose(kind, raw, save=ctx.req.save_in_sent, item_id=p.get("ItemId"),
                       folder_id=p.get("CollectionId"), long_id=p.get("LongId"))
    if body.qname != f"ComposeMail:{kind}":
        raise Refused(INVALID_CONTENT, f"the body is not a ComposeMail:{kind}")
    mime_el = body.find("ComposeMail:Mime")
    if mime_el is None:
        raise Refused(INVALID_MIME, "no Mime")
    mime = mime_el.opaque if mime_el.opaque is not None else \
        (mime_el.text or "").encode("utf-8")
    src = body.find("ComposeMail:Source")
    c = Compose(kind, mime, client_id=body.child_text("ComposeMail:ClientId"),
                save=body.find("ComposeMail:SaveInSentItems") is not None,
                replace=body.find("ComposeMail:ReplaceMime") is not None,
                account_id=body.child_text("ComposeMail:AccountId"))
    if src is not None:
        c.item_id = src.child_text("ComposeMail:ItemId")
        c.folder_id = src.child_text("ComposeMail:FolderId")
        c.long_id = src.child_text("ComposeMail:LongId")
    return c


def _source_id(c: Compose) -> int | None:
    """The original's email id: ItemId ("E42"), else a LongId whose last
    ":"-separated field is one ("E42", "M7:E42"; the Search command owns
    the LongId format)."""
    eid = eas_item.parse_server_id(c.item_id)
    if eid is None and c.long_id:
        eid = eas_item.parse_server_id(c.long_id.rpartition(":")[2])
    return eid


def _own(ctx) -> tuple[set[str], str]:
    """(the addresses the account may send from, its default address)."""
    cfg = ctx.app.cfg
    with ctx.store.view() as v:
        a = v.account(ctx.account)
    name = a.name if a is not None else ctx.username
    return (addresses.own_addresses(name, cfg.lmtp.local_domains, cfg.hostname),
            addresses.default_address(name, cfg.lmtp.local_domains, cfg.hostname))


def _original(ctx, c: Compose) -> tuple[int, bytes]:
    eid = _source_id(c)
    with ctx.store.view() as v:
        rec = v.email(ctx.account, eid) if eid is not None else None
        blob = v.blob(ctx.account, rec.blob) if rec is not None else None
        raw = bytes(blob) if blob is not None else None
    if raw is None:
        raise Refused(ITEM_NOT_FOUND, f"no item {c.item_id or c.long_id}")
    return eid, raw


def _build(c: Compose, orig: bytes | None, default: str, domain: str) -> bytes:
    """The whole message to send (CPU: runs in storeio.cpu)."""
    try:
        msg = eas_compose.prepare(c.mime, default, domain)
        if orig is None:
            return msg
        if c.kind == REPLY:
            return eas_compose.smart_reply(msg, orig)
        return eas_compose.smart_forward(msg, orig)
    except eas_compose.MimeError as exc:
        raise Refused(INVALID_MIME, str(exc)) from None
    except (ValueError, LookupError, TypeError) as exc:     # what the email package raises
        raise Refused(INVALID_MIME, f"unusable MIME: {exc}") from None


def _envelope(msg: bytes, own: set[str], default: str, max_rcpts: int) -> tuple[str, list[str]]:
    """(MAIL FROM, RCPT TO) of MSG (CPU: runs in storeio.cpu, the email
    package reads a 50 MB header in seconds)."""
    h = env.header_addresses(msg)
    named = [a for f in h.from_ + h.sender for a in f]
    bad = [a for a in named if not addresses.may_send_from(a, own)]
    if bad:
        raise Refused(ACCESS_DENIED, f"this account may not send as {', '.join(bad)}")
    try:
        mail_from = env.derive_mail_from(h)
    except env.EnvelopeError:
        mail_from = None
    if mail_from is None or not addresses.may_send_from(mail_from, own):
        mail_from = default
    rcpts = env.dedupe(env.derive_rcpt_to(h))
    if not rcpts:
        raise Refused(NO_RECIPIENT, "the message has no recipients")
    invalid = [r for r in rcpts if not addresses.valid_address(r)]
    if invalid:
        raise Refused(RECIPIENT_UNRESOLVED, f"invalid recipients: {', '.join(invalid)}")
    if len(rcpts) > max_rcpts:
        raise Refused(SEND_QUOTA_EXCEEDED, f"more than {max_rcpts} recipients")
    return mail_from, rcpts


class Duplicate(Exception):
    pass


def commit(tx, acc: int, device: str, client_id: str | None, wire: bytes, mail_from: str,
           rcpts: list[str], now: int, expires: int, sent_mbx: int | None, sent_copy,
           quota: int, orig: int | None, keyword: str | None) -> int:
    """The one write (writer thread): queue, Sent copy, keyword, ClientId."""
    ids_sent: list[str] = []
    if client_id is not None:
        st = tx.device_state(acc, device, STATE_KEY)
        ids_sent = json.loads(st) if st else []
        if client_id in ids_sent:
            raise Duplicate(client_id)
    qid = sending.enqueue(tx, acc, wire, mail_from, rcpts, now=now, send_at=now,
                          expires=expires)
    if sent_mbx is not None:
        try:
            # append checks the quota before it writes anything
            ops.append(tx, acc, [sent_mbx], sent_copy, [vocab.SEEN], quota)
        except OverQuota:
            log.warning("EAS send %d/%d: Sent copy skipped, over quota", acc, qid)
    if orig is not None and keyword is not None:
        ops.set_keywords(tx, acc, [orig], add=[keyword])
    if client_id is not None:
        ids_sent = (ids_sent + [client_id])[-MAX_CLIENT_IDS:]
        ops.put_device_state(tx, acc, device, STATE_KEY,
                             json.dumps(ids_sent, separators=(",", ":")).encode())
    return qid


async def send(ctx, c: Compose) -> None:
    """Queue C (and save it); Refused with the status when it cannot be."""
    cfg = ctx.app.cfg
    if c.account_id:
        raise Refused(INVALID_ACCOUNT_ID, "this account has no other accounts")
    if not cfg.smtp.send_enabled:
        raise Refused(ACCESS_DENIED, "sending is disabled on this server")
    if not c.mime or not c.mime.strip():
        raise Refused(INVALID_MIME, "no message")
    if c.client_id is not None and not 1 <= len(c.client_id) <= 40:
        raise Refused(INVALID_CONTENT, "a ClientId is 1 to 40 characters")
    if len(c.mime) > cfg.smtp.max_size:
        raise Refused(ATTACHMENT_TOO_LARGE, "the message is too big to send")
    own, default = _own(ctx)
    orig_eid, orig = None, None
    if c.kind != SEND:
        orig_eid, orig = _original(ctx, c)
    domain = default.rpartition("@")[2] or cfg.hostname
    msg = await storeio.cpu(_build, c, None if c.replace else orig, default, domain)
    if len(msg) > cfg.smtp.max_size:
        raise Refused(ATTACHMENT_TOO_LARGE, "the message is too big to send")
    mail_from, rcpts = await storeio.cpu(_envelope, msg, own, default, cfg.smtp.max_recipients)
    sent_mbx, sent_copy = None, None
    if c.save:
        with ctx.store.view() as v:
            m = v.mailbox_by_role(ctx.account, "sent")
        if m is None:
            log.warning("EAS send for %s: no Sent mailbox; no copy saved", ctx.username)
        else:
            sent_mbx = m.id
            sent_copy = await storeio.cpu(ingest.prepare, msg)
    wire = await storeio.cpu(env.wire_bytes, msg)
    now = int(time.time())
    keyword = {REPLY: vocab.ANSWERED, FORWARD: vocab.FORWARDED}.get(c.kind)
    try:
        qid = await storeio.write(ctx.store, commit, ctx.account, ctx.req.device_id,
                                  c.client_id, wire, mail_from, rcpts, now,
                                  now + int(cfg.smtp.expire), sent_mbx, sent_copy,
                                  cfg.store.quota, orig_eid, keyword)
    except Duplicate:
        raise Refused(PREVIOUSLY_SENT, f"ClientId {c.client_id} was sent already") from None
    except StoreFullError:
        raise Refused(SERVER_ERROR_RETRY_LATER, "the store is full") from None
    except StoreError as exc:
        raise Refused(SERVER_ERROR, f"the store refused: {exc}") from None
    log.info("EAS %s from %s/%s queued as %d/%d for %d recipient(s)", c.kind, ctx.username,
             ctx.req.device_id, ctx.account, qid, len(rcpts))


def _failed(ctx, kind: str, r: Refused):
    log.info("EAS %s from %s/%s refused (%d): %s", kind, ctx.username, ctx.req.device_id,
             r.status, r)
    if ctx.major < 14:
        out = problem(500, "Send failed", f"status {r.status}: {r}")
        out.headers.append(("ms-server-activesync", "16.1"))
        return out
    return E(f"ComposeMail:{kind}", E("ComposeMail:Status", text=str(r.status)))


def _command(kind: str):
    async def run(ctx, body: Element | None):
        try:
            c = parse(ctx, body, kind)
            await send(ctx, c)
        except Refused as r:
            return _failed(ctx, kind, r)
        return Response(200, b"", [("ms-server-activesync", "16.1"),
                                   ("cache-control", "private")])
    run.__name__ = f"run_{kind.lower()}"
    return run


COMMANDS = [
    Command(kind, _command(kind), f"ComposeMail:{kind}", "ComposeMail:Status", raw_body=True)
    for kind in (SEND, REPLY, FORWARD)
]
