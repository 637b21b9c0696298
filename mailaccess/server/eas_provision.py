"""ActiveSync Provision (MS-ASPROV): the device policy and its policy keys.

Two phases: an initial request (no or a stale policy key) gets the policy
(``EASProvisionDoc`` built from config ``[eas]``) and a temporary key; the
acknowledgement, carrying that temporary key, gets the final key, which the
device then sends as ``X-MS-PolicyKey`` (or in the base64 query) on every
other command.  ``settings:DeviceInformation`` (14.1+) is stored and
answered with its own Status.  The server does not verify compliance (it
cannot): any acknowledgement status earns the final key.

State per device, in the store under device-state key ``prov`` (JSON):
``temp`` (the temporary key offered), ``key`` (the final key), ``policy``
(a digest of the policy the final key was granted for: a changed policy makes
old keys answer 143 PolicyRefresh), ``info`` (DeviceInformation).

Remote wipe (MS-ASPROV 3.2.5.1.2): ``request_wipe`` (the CLI's ``mailaccess
eas wipe USER DEVICE``) sets ``wipe`` to ``pending``; every other command of
that device then gets status 140 (HTTP 449 for 12.x), and a Provision gets
``<RemoteWipe/>`` (``sent``); the device's acknowledgement (RemoteWipe with
its Status) is recorded (``done``, ``wipe_status``).  The device stays
wiped (every Provision answers RemoteWipe again) until the operator runs
``mailaccess eas forget USER DEVICE``.

Not done: ``AccountOnlyRemoteWipe`` (16.1) and the legacy
``MS-WAP-Provisioning-XML`` policy type of 12.0 and older.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time

from .. import storeio
from ..proto.eas.wbxml import E, Element
from ..store import ops
from .eas_command import Command

log = logging.getLogger("mailaccess.eas")

STATE_KEY = "prov"
#: the device-state key server/eas.py registers a new device under (its
#: DeviceType and first request): the device counts against the cap from then
SEEN_KEY = "seen"
POLICY_TYPE = "MS-EAS-Provisioning-WBXML"

# Provision Status (MS-ASPROV 2.2.2.54.2) and Policy Status (2.2.2.54.1)
OK = 1
PROTOCOL_ERROR = 2
POLICY_UNKNOWN_TYPE = 3
POLICY_WRONG_KEY = 5


def _bool(b: bool) -> str:
    return "1" if b else "0"


def policy_doc(cfg) -> list[tuple[str, str]]:
    """The EASProvisionDoc settings of config [eas] CFG, in document order
    ("" is an empty element: no limit)."""
    def lim(n: int) -> str:
        return str(n) if n else ""

    return [
        ("DevicePasswordEnabled", _bool(cfg.device_password_enabled)),
        ("AlphanumericDevicePasswordRequired", _bool(cfg.alphanumeric_password_required)),
        ("PasswordRecoveryEnabled", "0"),
        ("RequireStorageCardEncryption", "0"),
        ("AttachmentsEnabled", "1"),
        ("MinDevicePasswordLength", str(cfg.min_password_length)),
        ("MaxInactivityTimeDeviceLock", lim(cfg.max_inactivity_lock)),
        ("MaxDevicePasswordFailedAttempts", lim(cfg.max_failed_attempts)),
        ("MaxAttachmentSize", lim(cfg.max_attachment_size)),
        ("AllowSimpleDevicePassword", _bool(cfg.allow_simple_password)),
        ("DevicePasswordExpiration", lim(cfg.password_expiration)),
        ("DevicePasswordHistory", str(cfg.password_history)),
        ("AllowStorageCard", "1"),
        ("AllowCamera", "1"),
        ("RequireDeviceEncryption", _bool(cfg.require_device_encryption)),
        ("AllowUnsignedApplications", "1"),
        ("AllowUnsignedInstallationPackages", "1"),
        ("MinDevicePasswordComplexCharacters", str(cfg.min_password_complex_characters)),
        ("AllowWiFi", "1"),
        ("AllowTextMessaging", "1"),
        ("AllowPOPIMAPEmail", "1"),
        ("AllowBluetooth", "2"),
        ("AllowIrDA", "1"),
        ("RequireManualSyncWhenRoaming", "0"),
        ("AllowDesktopSync", "1"),
        ("MaxCalendarAgeFilter", "0"),
        ("AllowHTMLEmail", "1"),
        ("MaxEmailAgeFilter", "0"),
        ("MaxEmailBodyTruncationSize", "-1"),
        ("MaxEmailHTMLBodyTruncationSize", "-1"),
        ("RequireSignedSMIMEMessages", "0"),
        ("RequireEncryptedSMIMEMessages", "0"),
        ("RequireSignedSMIMEAlgorithm", "0"),
        ("RequireEncryptionSMIMEAlgorithm", "0"),
        ("AllowSMIMEEncryptionAlgorithmNegotiation", "2"),
        ("AllowSMIMESoftCerts", "1"),
        ("AllowBrowser", "1"),
        ("AllowConsumerEmail", "1"),
        ("AllowRemoteDesktop", "1"),
        ("AllowInternetSharing", "1"),
    ]


def policy_digest(cfg) -> str:
    return hashlib.sha256(json.dumps(policy_doc(cfg)).encode()).hexdigest()[:16]


def new_key() -> int:
    return secrets.randbelow(0xFFFFFFFE) + 1          # never 0: 0 means "none"


def load_state(store, acc: int, device: str) -> dict:
    with store.view() as v:
        raw = v.device_state(acc, device, STATE_KEY)
    return json.loads(raw) if raw else {}


async def save_state(store, acc: int, device: str, state: dict) -> None:
    await storeio.write(store, ops.put_device_state, acc, device, STATE_KEY,
                        json.dumps(state, separators=(",", ":")).encode())


def policy_status(ctx, required: bool = True) -> int:
    """0 when the request's policy key is the device's current final key
    (or REQUIRED is off); else the common status to answer (142, 143 or
    144; 140 while a remote wipe is pending for the device)."""
    key = ctx.req.policy_key
    st = load_state(ctx.store, ctx.account, ctx.req.device_id)
    if st.get("wipe"):
        return 140                                  # RemoteWipeRequested
    if not required:
        return 0
    if not key:
        return 142                                  # DeviceNotProvisioned
    if key != st.get("key"):
        return 144                                  # InvalidPolicyKey
    if st.get("policy") != policy_digest(ctx.cfg):
        return 143                                  # PolicyRefresh
    return 0


def _device_info(el: Element | None) -> dict:
    out = {}
    s = el.find("Settings:Set") if el is not None else None
    for c in (s.children if s is not None else []):
        if c.text is not None and len(out) < 32:
            out[c.tag] = c.text[:256]
    return out


async def run(ctx, body: Element | None) -> Element:
    if body is None or body.qname != "Provision:Provision":
        return E("Provision:Provision", E("Provision:Status", text=str(PROTOCOL_ERROR)))
    out: list[Element] = []
    state = load_state(ctx.store, ctx.account, ctx.req.device_id)
    if state.get("wipe"):
        return await _wipe(ctx, body, state)
    info = body.find("Settings:DeviceInformation")
    if info is not None:
        if ctx.major < 14 or ctx.version == "14.0":
            return E("Provision:Provision", E("Provision:Status", text=str(PROTOCOL_ERROR)))
        state["info"] = _device_info(info)
        out.append(E("Settings:DeviceInformation", E("Settings:Status", text="1")))
    policies = body.find("Provision:Policies")
    policy = policies.find("Provision:Policy") if policies is not None else None
    if policy is None:
        # remote wipe acknowledgements are not supported; nothing else comes without a Policy
        return E("Provision:Provision", E("Provision:Status", text=str(PROTOCOL_ERROR)))
    ptype = policy.child_text("Provision:PolicyType")
    if ptype != POLICY_TYPE:
        return E("Provision:Provision", *out, E("Provision:Status", text=str(OK)),
                 E("Provision:Policies", E("Provision:Policy",
                   E("Provision:PolicyType", text=ptype or ""),
                   E("Provision:Status", text=str(POLICY_UNKNOWN_TYPE)))))
    ack_key = policy.child_text("Provision:PolicyKey")
    if ack_key is None:
        # phase 1: the policy and a temporary key
        temp = new_key()
        state["temp"] = temp
        await save_state(ctx.store, ctx.account, ctx.req.device_id, state)
        doc = E("Provision:EASProvisionDoc",
                *[E("Provision:" + name, text=value if value else None)
                  for name, value in policy_doc(ctx.cfg)])
        return E("Provision:Provision", *out, E("Provision:Status", text=str(OK)),
                 E("Provision:Policies", E("Provision:Policy",
                   E("Provision:PolicyType", text=POLICY_TYPE),
                   E("Provision:Status", text=str(OK)),
                   E("Provision:PolicyKey", text=str(temp)),
                   E("Provision:Data", doc))))
    # phase 2: the acknowledgement of the temporary key
    if not ack_key.isdigit() or int(ack_key) != state.get("temp"):
        return E("Provision:Provision", *out, E("Provision:Status", text=str(OK)),
                 E("Provision:Policies", E("Provision:Policy",
                   E("Provision:PolicyType", text=POLICY_TYPE),
                   E("Provision:Status", text=str(POLICY_WRONG_KEY)))))
    final = new_key()
    state.pop("temp", None)
    state["key"] = final
    state["policy"] = policy_digest(ctx.cfg)
    state["ack"] = policy.child_text("Provision:Status") or ""
    await save_state(ctx.store, ctx.account, ctx.req.device_id, state)
    log.info("ActiveSync device %s (%s) of %s provisioned", ctx.req.device_id,
             ctx.req.device_type, ctx.username)
    return E("Provision:Provision", *out, E("Provision:Status", text=str(OK)),
             E("Provision:Policies", E("Provision:Policy",
               E("Provision:PolicyType", text=POLICY_TYPE),
               E("Provision:Status", text=str(OK)),
               E("Provision:PolicyKey", text=str(final)))))


async def _wipe(ctx, body: Element, state: dict) -> Element:
    ack = body.find("Provision:RemoteWipe")
    if ack is not None and ack.child_text("Provision:Status") is not None:
        state["wipe"] = "done"
        state["wipe_status"] = (ack.child_text("Provision:Status") or "")[:4]
        await save_state(ctx.store, ctx.account, ctx.req.device_id, state)
        return E("Provision:Provision", E("Provision:Status", text=str(OK)))
    if state["wipe"] == "pending":
        state["wipe"] = "sent"
        await save_state(ctx.store, ctx.account, ctx.req.device_id, state)
    return E("Provision:Provision", E("Provision:Status", text=str(OK)),
             E("Provision:RemoteWipe"))


# --- the operator's side (synchronous: the CLI) ----------------------------------------------

def request_wipe(store, acc: int, device: str) -> None:
    """Ask DEVICE of ACC to wipe itself at its next request (the operator's
    act: a device not seen yet is made, and counts against the cap)."""
    with store.view() as v:
        raw = v.device_state(acc, device, STATE_KEY)
    state = json.loads(raw) if raw else {}
    state["wipe"] = "pending"
    store.write_sync(ops.put_device_state, acc, device, STATE_KEY,
                     json.dumps(state, separators=(",", ":")).encode())


def device_status(store, acc: int, device: str) -> dict | None:
    """DEVICE's provisioning state ({} for a device seen but not provisioned;
    None: the store knows no such device)."""
    with store.view() as v:
        raw = v.device_state(acc, device, STATE_KEY)
        if raw is None:
            return {} if v.device_known(acc, device) else None
    return json.loads(raw)


def list_devices(store, acc: int) -> list[dict]:
    """ACC's devices (those counted against ``[eas] max_devices_per_user``):
    DeviceId, DeviceType and first request (UTC) when the server registered
    it (server/eas.py, key ``seen``), whether it holds a final policy key."""
    out = []
    with store.view() as v:
        for dev in v.devices(acc):
            seen = json.loads(v.device_state(acc, dev, SEEN_KEY) or b"{}")
            prov = json.loads(v.device_state(acc, dev, STATE_KEY) or b"{}")
            since = seen.get("since")
            out.append({"device": dev, "type": seen.get("type", "-"),
                        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
                        if since else "-",
                        "provisioned": "yes" if prov.get("key") else "no"})
    return out


def forget_device(store, acc: int, device: str) -> None:
    """Drop all of DEVICE's state: it provisions and syncs from scratch."""
    store.write_sync(ops.delete_device_state, acc, device)


COMMANDS = [Command("Provision", run, "Provision:Provision", "Provision:Status",
                    needs_policy=False)]
