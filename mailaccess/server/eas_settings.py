"""ActiveSync Settings (MS-ASCMD 2.2.1.18): Oof, DeviceInformation,
UserInformation, DevicePassword, RightsManagementInformation.

Each child of the request gets its own element with its own Status in the
answer (MS-ASCMD 2.2.3.177.15: 1 success, 2 protocol error, 5 invalid
arguments, 6 conflicting arguments), after the overall Status.

* Oof Get / Set is the JMAP VacationResponse (RFC 8621 §8) of the account,
  the same record (store/sending.py ``vacation`` / ``set_vacation``), so a
  JMAP client sees what the phone set and the other way round:
  OofState 0 = isEnabled false; 1 = isEnabled with no dates; 2 = isEnabled
  with StartTime/EndTime = fromDate/toDate.  JMAP has one reply for
  everyone where Exchange has three (AppliesToInternal, ...ExternalKnown,
  ...ExternalUnknown): a Get answers the one reply under all three
  (Enabled 1 when there is a reply text); a Set takes the first enabled
  OofMessage with a ReplyMessage in that order (BodyType HTML -> htmlBody,
  Text -> textBody, the other body cleared; the vacation sender derives
  text from HTML), clears the bodies when every OofMessage given is
  disabled, and keeps them when none is given.  The subject (not in EAS)
  is kept.  A Get's BodyType chooses the form answered (HTML from a text
  reply is escaped text; text from an HTML reply has its tags removed).
* DeviceInformation Set is stored with the device where Provision stores it
  (eas_provision's state "prov", key "info", through its own helpers).
* UserInformation Get: the account's addresses (every address it may send
  from: outbound/addresses.py, where JMAP identities must also lie).
  12.x/14.0: ``Get/EmailAddresses/SmtpAddress``; 14.1+ (2.2.3.2 Account,
  2.2.3.138 PrimarySmtpAddress): ``Get/Accounts/Account`` with
  UserDisplayName and ``EmailAddresses`` (SmtpAddress..., PrimarySmtpAddress:
  the default identity's address).  The primary account has no AccountId.
* DevicePassword Set: acknowledged (Status 1); the password itself is not
  kept (there is no password recovery here).
* RightsManagementInformation Get (14.1+): a server without IRM: Status 1
  and an empty ``rm:RightsManagementTemplates`` (no templates).

Device state: none of its own (DeviceInformation goes to "prov").
"""
from __future__ import annotations

import html
import logging
from datetime import datetime, timezone

from .. import storeio
from ..mime.compose import html_as_text
from ..outbound import addresses
from ..proto.eas.wbxml import E, Element
from ..store import sending
from . import eas_provision
from .eas_command import Command

log = logging.getLogger("mailaccess.eas")

OK = 1
PROTOCOL_ERROR = 2
INVALID_ARGUMENTS = 5
CONFLICTING_ARGUMENTS = 6

AUDIENCES = ("AppliesToInternal", "AppliesToExternalKnown", "AppliesToExternalUnknown")
MAX_TEXT = 256 * 1024          # as JMAP's VacationResponse/set
DEFAULT = {"isEnabled": False, "fromDate": None, "toDate": None, "subject": None,
           "textBody": None, "htmlBody": None}


class Invalid(Exception):
    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


def _st(n: int) -> Element:
    return E("Settings:Status", text=str(n))


# --- dates: EAS "2026-12-03T10:00:00.000Z" <-> JMAP UTCDate "2026-12-03T10:00:00Z" ---------

def eas_to_utc(s: str | None) -> str:
    if not s:
        raise Invalid(INVALID_ARGUMENTS, "a date is missing")
    t = s.strip()
    try:
        if t.endswith("Z"):
            t = t[:-1] + "+00:00"
        d = datetime.fromisoformat(t)
    except ValueError:
        raise Invalid(INVALID_ARGUMENTS, f"not a date: {s!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_to_eas(s: str) -> str:
    return s[:-1] + ".000Z" if s.endswith("Z") else s


# --- Oof ---------------------------------------------------------------------------------------

def current_vacation(view, acc: int) -> dict:
    out = dict(DEFAULT)
    out.update(view.vacation(acc) or {})
    return out


def _as_text(rec: dict) -> str | None:
    if rec.get("textBody") is not None:
        return rec["textBody"]
    if rec.get("htmlBody") is not None:
        return html_as_text(rec["htmlBody"])
    return None


def _as_html(rec: dict) -> str | None:
    if rec.get("htmlBody") is not None:
        return rec["htmlBody"]
    if rec.get("textBody") is not None:
        return "<html><body>" + html.escape(rec["textBody"]).replace("\n", "<br>\n") + \
            "</body></html>"
    return None


def oof_get(rec: dict, body_type: str | None) -> Element:
    """The Oof Get answer for the vacation record REC."""
    want_html = (body_type or "").strip().upper() == "HTML"
    kids: list[Element] = []
    if not rec.get("isEnabled"):
        kids.append(E("Settings:OofState", text="0"))
    elif rec.get("fromDate") or rec.get("toDate"):
        kids.append(E("Settings:OofState", text="2"))
        if rec.get("fromDate"):
            kids.append(E("Settings:StartTime", text=utc_to_eas(rec["fromDate"])))
        if rec.get("toDate"):
            kids.append(E("Settings:EndTime", text=utc_to_eas(rec["toDate"])))
    else:
        kids.append(E("Settings:OofState", text="1"))
    reply = _as_html(rec) if want_html else _as_text(rec)
    for audience in AUDIENCES:
        msg = [E("Settings:" + audience),
               E("Settings:Enabled", text="1" if reply is not None else "0")]
        if reply is not None:
            msg += [E("Settings:ReplyMessage", text=reply),
                    E("Settings:BodyType", text="HTML" if want_html else "Text")]
        kids.append(E("Settings:OofMessage", *msg))
    return E("Settings:Oof", _st(OK), E("Settings:Get", *kids))


def oof_apply(rec: dict, set_el: Element) -> dict:
    """REC changed by an Oof Set element; Invalid when it cannot be."""
    rec = dict(rec)
    state = set_el.child_text("Settings:OofState")
    if state is not None:
        if state.strip() not in ("0", "1", "2"):
            raise Invalid(INVALID_ARGUMENTS, f"OofState {state!r}")
        state = state.strip()
        if state == "0":
            rec["isEnabled"] = False
        elif state == "1":
            rec.update(isEnabled=True, fromDate=None, toDate=None)
        else:
            lo = eas_to_utc(set_el.child_text("Settings:StartTime"))
            hi = eas_to_utc(set_el.child_text("Settings:EndTime"))
            if hi <= lo:
                raise Invalid(CONFLICTING_ARGUMENTS, "EndTime is not after StartTime")
            rec.update(isEnabled=True, fromDate=lo, toDate=hi)
    messages = set_el.findall("Settings:OofMessage")
    if messages:
        chosen = None
        for audience in AUDIENCES:
            for m in messages:
                if m.find("Settings:" + audience) is None:
                    continue
                if (m.child_text("Settings:Enabled") or "").strip() != "1":
                    continue
                if m.find("Settings:ReplyMessage") is not None and chosen is None:
                    chosen = m
        if chosen is None:
            enabled = [m for m in messages
                       if (m.child_text("Settings:Enabled") or "").strip() == "1"]
            if not enabled:
                rec.update(textBody=None, htmlBody=None)
        else:
            reply = chosen.child_text("Settings:ReplyMessage") or ""
            if len(reply.encode("utf-8", "replace")) > MAX_TEXT:
                raise Invalid(INVALID_ARGUMENTS, "the reply is too long")
            kind = (chosen.child_text("Settings:BodyType") or "Text").strip().upper()
            if kind == "HTML":
                rec.update(htmlBody=reply, textBody=None)
            elif kind == "TEXT":
                rec.update(textBody=reply, htmlBody=None)
            else:
                raise Invalid(INVALID_ARGUMENTS, f"BodyType {kind!r}")
    return rec


async def oof(ctx, el: Element) -> Element:
    get = el.find("Settings:Get")
    set_el = el.find("Settings:Set")
    if (get is None) == (set_el is None):
        return E("Settings:Oof", _st(PROTOCOL_ERROR))
    with ctx.store.view() as v:
        rec = current_vacation(v, ctx.account)
    if get is not None:
        return oof_get(rec, get.child_text("Settings:BodyType"))
    try:
        new = oof_apply(rec, set_el)
    except Invalid as exc:
        log.info("EAS Settings Oof Set from %s refused: %s", ctx.req.device_id, exc)
        return E("Settings:Oof", _st(exc.status))
    if new != rec:
        await storeio.write(ctx.store, sending.set_vacation, ctx.account, new)
    return E("Settings:Oof", _st(OK))


# --- DeviceInformation, DevicePassword, UserInformation, RightsManagementInformation ----------

async def device_information(ctx, el: Element) -> Element:
    if el.find("Settings:Set") is None:
        return E("Settings:DeviceInformation", _st(PROTOCOL_ERROR))
    state = eas_provision.load_state(ctx.store, ctx.account, ctx.req.device_id)
    state["info"] = eas_provision._device_info(el)
    await eas_provision.save_state(ctx.store, ctx.account, ctx.req.device_id, state)
    return E("Settings:DeviceInformation", _st(OK))


async def device_password(ctx, el: Element) -> Element:
    if el.find("Settings:Set") is None:
        return E("Settings:DevicePassword", _st(PROTOCOL_ERROR))
    return E("Settings:DevicePassword", _st(OK))


def user_addresses(ctx) -> tuple[str, list[str], str]:
    """(display name, every address of the account, primary first, the primary)."""
    cfg = ctx.app.cfg
    with ctx.store.view() as v:
        a = v.account(ctx.account)
        idents = v.identities(ctx.account)
    name = a.name if a is not None else ctx.username
    primary = addresses.default_address(name, cfg.lmtp.local_domains, cfg.hostname)
    own = addresses.own_addresses(name, cfg.lmtp.local_domains, cfg.hostname)
    out = [primary] + sorted(x for x in own if x.lower() != primary.lower())
    display = ""
    for rec in idents.values():
        e = rec.get("email", "")
        if e and e.lower() not in {x.lower() for x in out}:
            out.append(e)
        if e.lower() == primary.lower() and rec.get("name"):
            display = display or rec["name"]
    return display or name, out, primary


async def user_information(ctx, el: Element) -> Element:
    if el.find("Settings:Get") is None:
        return E("Settings:UserInformation", _st(PROTOCOL_ERROR))
    display, addrs, primary = user_addresses(ctx)
    smtp = [E("Settings:SmtpAddress", text=a) for a in addrs]
    if ctx.major < 14 or ctx.version == "14.0":
        get = E("Settings:Get", E("Settings:EmailAddresses", *smtp))
    else:
        get = E("Settings:Get", E("Settings:Accounts", E(
            "Settings:Account", E("Settings:UserDisplayName", text=display),
            E("Settings:EmailAddresses", *smtp,
              E("Settings:PrimarySmtpAddress", text=primary)))))
    return E("Settings:UserInformation", _st(OK), get)


async def rights_management(ctx, el: Element) -> Element:
    if el.find("Settings:Get") is None or ctx.major < 14 or ctx.version == "14.0":
        return E("Settings:RightsManagementInformation", _st(PROTOCOL_ERROR))
    return E("Settings:RightsManagementInformation", _st(OK),
             E("Settings:Get", E("RightsManagement:RightsManagementTemplates")))


HANDLERS = {
    "Settings:Oof": oof,
    "Settings:DeviceInformation": device_information,
    "Settings:DevicePassword": device_password,
    "Settings:UserInformation": user_information,
    "Settings:RightsManagementInformation": rights_management,
}


async def run(ctx, body: Element | None) -> Element:
    if body is None or body.qname != "Settings:Settings" or not body.children:
        return E("Settings:Settings", _st(PROTOCOL_ERROR))
    if any(c.qname not in HANDLERS for c in body.children):
        return E("Settings:Settings", _st(PROTOCOL_ERROR))
    out = [await HANDLERS[c.qname](ctx, c) for c in body.children]
    return E("Settings:Settings", _st(OK), *out)


COMMANDS = [Command("Settings", run, "Settings:Settings", "Settings:Status")]
