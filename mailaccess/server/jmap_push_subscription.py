"""JMAP PushSubscription/get and /set (RFC 8620 §7.2): what a client (a
phone with UnifiedPush, a browser) asks the server to POST StateChanges to.

Subscriptions belong to the authenticated user, not to an account: the
methods take no accountId (``account=False``) and answer no state.  They are
kept under the user's account in the store (ops.*_push_subscription).  The
``url`` and ``keys`` are write-only: /get never returns them (§7.2.1).  On
create the server picks a verification code, which push delivery
(server/push_delivery.py) POSTs to the url as a PushVerification; no
StateChange is pushed until the client sets ``verificationCode`` to it.
Only ``expires``, ``types`` and ``verificationCode`` can change.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import secrets
import time
from urllib.parse import urlsplit

from ..config import PushConfig
from ..proto.jmap.errors import MethodError
from ..store import ops
from ..store.records import PushSubscription
from .jmap_api import Call, method
from .jmap_standard import SetError, get_ids, get_properties, run_set

KIND = "PushSubscription"
PROPERTIES = ("id", "deviceClientId", "url", "keys", "verificationCode", "expires", "types")
RETURNED = ("id", "deviceClientId", "verificationCode", "expires", "types")
MUTABLE = {"expires", "types", "verificationCode"}

MAX_URL = 4096
MAX_DEVICE_ID = 255
MAX_TYPES = 64
MAX_TYPE_NAME = 255


def push_config(call: Call) -> PushConfig:
    return getattr(call.ctx.cfg, "push", None) or PushConfig()


def _changed(call: Call) -> None:
    """Tell a running push delivery service (if any) to look again."""
    from . import push_delivery

    push_delivery.subscriptions_changed(call.ctx.store)


# --- values --------------------------------------------------------------------------

def utc_date(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc_date(s) -> int | None:
    """A UTCDate (RFC 8620 §1.4: "Z", seconds, optional fraction) -> Unix time."""
    if not isinstance(s, str) or not s.endswith("Z") or len(s) > 40 or "T" not in s:
        return None
    try:
        d = dt.datetime.fromisoformat(s[:-1] + "+00:00")
    except ValueError:
        return None
    return int(d.timestamp())


def b64url(s) -> bytes | None:
    if not isinstance(s, str) or len(s) > 200:
        return None
    try:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    except (binascii.Error, ValueError):
        return None


def check_keys(keys) -> tuple[str, str]:
    """``keys`` {p256dh, auth} (RFC 8291): a P-256 public point and a
    16-byte auth secret, base64url -> as given; ("", "") for null."""
    if keys is None:
        return "", ""
    bad = SetError("invalidProperties", "keys must be {p256dh, auth}: a P-256 public key "
                   "and a 16-byte secret, base64url", properties=["keys"])
    if not isinstance(keys, dict) or set(keys) != {"p256dh", "auth"}:
        raise bad
    point, auth = b64url(keys["p256dh"]), b64url(keys["auth"])
    if point is None or auth is None or len(auth) != 16 or len(point) != 65:
        raise bad
    from cryptography.hazmat.primitives.asymmetric import ec
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise bad from None
    return keys["p256dh"], keys["auth"]


def loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url, cfg: PushConfig) -> str:
    """https only; http (and loopback targets) only when the config allows."""
    bad = SetError("invalidProperties", "url must be an https URL", properties=["url"])
    if not isinstance(url, str) or not url or len(url) > MAX_URL \
            or any(ord(c) <= 0x20 or ord(c) == 0x7f for c in url):
        raise bad
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad from None
    if not u.hostname or u.fragment:
        raise bad
    loop = loopback_host(u.hostname)
    if loop and not cfg.allow_loopback_http:
        raise SetError("invalidProperties", "push URLs on this host are not allowed",
                       properties=["url"])
    if u.scheme == "https" or (u.scheme == "http" and loop and cfg.allow_loopback_http):
        return url
    raise bad


def check_types(types) -> list[str] | None:
    if types is None:
        return None
    if not isinstance(types, list) or len(types) > MAX_TYPES or not all(
            isinstance(t, str) and 0 < len(t) <= MAX_TYPE_NAME for t in types):
        raise SetError("invalidProperties", "types must be null or a list of type names",
                       properties=["types"])
    return list(dict.fromkeys(types))


def capped_expires(value, cfg: PushConfig, now: int) -> tuple[int, bool]:
    """(the expiry the server keeps, whether it differs from VALUE)."""
    limit = now + cfg.max_expires_days * 86400
    if value is None:
        return limit, True
    t = parse_utc_date(value)
    if t is None:
        raise SetError("invalidProperties", "expires must be a UTCDate",
                       properties=["expires"])
    if t <= now:
        raise SetError("invalidProperties", "expires is in the past", properties=["expires"])
    if t > limit:
        return limit, True
    return t, utc_date(t) != value


def to_json(p: PushSubscription, props) -> dict:
    full = {"id": str(p.id), "deviceClientId": p.device_client_id,
            "verificationCode": p.client_code, "expires": utc_date(p.expires),
            "types": p.types}
    return {k: full[k] for k in props}


def parse_sid(s) -> int | None:
    if isinstance(s, str) and s.isdigit() and len(s) <= 10 and s[0] != "0":
        return int(s)
    return None


# --- methods -------------------------------------------------------------------------

@method("PushSubscription/get", account=False, args=("ids", "properties"))
async def push_subscription_get(call: Call) -> dict:
    props = get_properties(call, PROPERTIES, RETURNED)
    props = [p for p in props if p in RETURNED]          # url and keys: never (§7.2.1)
    with call.view() as v:
        subs = {str(p.id): p for p in v.push_subscriptions(call.acc)}
    found, not_found = [], []
    for i in get_ids(call, lambda: list(subs)):
        p = subs.get(i)
        if p is None:
            not_found.append(i)
        else:
            found.append(to_json(p, props))
    return {"list": found, "notFound": not_found}


@method("PushSubscription/set", account=False, args=("create", "update", "destroy"))
async def push_subscription_set(call: Call) -> dict:
    cfg = push_config(call)
    if call.ctx.store.readonly and (call.args.get("create") or call.args.get("update")
                                    or call.args.get("destroy")):
        raise MethodError("forbidden", "the store is open read-only")

    async def create(call: Call, cid: str, obj: dict) -> dict:
        unknown = [k for k in obj if k not in PROPERTIES]
        if unknown:
            raise SetError("invalidProperties", "unknown properties", properties=unknown)
        for k in ("id", "verificationCode"):
            if obj.get(k) is not None:
                raise SetError("invalidProperties", f"{k} is set by the server",
                               properties=[k])
        dev = obj.get("deviceClientId")
        if not isinstance(dev, str) or not dev or len(dev) > MAX_DEVICE_ID:
            raise SetError("invalidProperties", "deviceClientId is required",
                           properties=["deviceClientId"])
        url = check_url(obj.get("url"), cfg)
        p256dh, auth = check_keys(obj.get("keys"))
        types = check_types(obj.get("types"))
        now = int(time.time())
        expires, changed = capped_expires(obj.get("expires"), cfg, now)
        p = PushSubscription(0, dev, url, p256dh, auth, secrets.token_urlsafe(24), None,
                             expires, types, now)
        try:
            sid = await call.write(ops.create_push_subscription, call.acc, p,
                                   cfg.max_per_user)
        except ops.OverQuota as exc:
            raise SetError("overQuota", str(exc)) from None
        _changed(call)
        out = {"id": str(sid)}
        if changed:
            out["expires"] = utc_date(expires)
        return out

    async def update(call: Call, id_: str, patch: dict) -> dict | None:
        sid = parse_sid(id_)
        with call.view() as v:
            p = v.push_subscription(call.acc, sid) if sid is not None else None
        if p is None:
            raise SetError("notFound")
        bad = [k for k in patch if k not in MUTABLE]
        if bad:
            # a path into keys ("keys/auth") is a change of keys: immutable too
            raise SetError("invalidProperties", "only expires, types and verificationCode "
                           "can change", properties=sorted(bad))
        kw, out = {}, None
        if "expires" in patch:
            kw["expires"], changed = capped_expires(patch["expires"], cfg, int(time.time()))
            if changed:
                out = {"expires": utc_date(kw["expires"])}
        if "types" in patch:
            kw["types"] = check_types(patch["types"])
        if "verificationCode" in patch:
            code = patch["verificationCode"]
            if code is not None and (not isinstance(code, str) or code != p.code):
                raise SetError("invalidProperties", "the verification code does not match",
                               properties=["verificationCode"])
            kw["client_code"] = code
        if kw:
            try:
                await call.write(ops.update_push_subscription, call.acc, sid, **kw)
            except ops.NotFound:
                raise SetError("notFound") from None
            _changed(call)
        return out

    async def destroy(call: Call, id_: str) -> None:
        sid = parse_sid(id_)
        if sid is None or not await call.write(ops.destroy_push_subscription, call.acc, sid):
            raise SetError("notFound")
        _changed(call)

    res = await run_set(call, KIND, create=create, update=update, destroy=destroy)
    for k in ("accountId", "oldState", "newState"):     # §7.2.2: none of these
        res.pop(k, None)
    return res
