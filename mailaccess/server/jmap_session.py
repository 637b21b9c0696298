"""The JMAP Session resource (RFC 8620 §2): what the server offers this user.

``session_resource(...)`` builds the object for one authenticated user from
the method registry (server/jmap_api.METHODS) and the limits.  A capability
is advertised only when every method it names is registered
(``REQUIRED_METHODS``) and every endpoint it needs works
(``ENDPOINT_CAPABILITIES``): the table is the one place to update when a
capability is finished.  URLs are absolute, from ``base`` (``[http]
public_url`` or the request's scheme and Host, server/http.py ``base_url``).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import ids
from ..proto.jmap import capabilities as cap
from ..proto.jmap.request import Limits
from . import jmap_email_filter

# capability -> the methods that must all work before it is advertised
REQUIRED_METHODS: dict[str, tuple[str, ...]] = {
    cap.CORE: ("Core/echo", "Blob/copy"),
    cap.MAIL: ("Mailbox/get", "Mailbox/changes", "Mailbox/query", "Mailbox/queryChanges",
               "Mailbox/set", "Thread/get", "Thread/changes", "Email/get", "Email/changes",
               "Email/query", "Email/queryChanges", "Email/set", "Email/copy",
               "Email/import", "Email/parse", "SearchSnippet/get"),
    cap.SUBMISSION: ("Identity/get", "Identity/changes", "Identity/set",
                     "EmailSubmission/get", "EmailSubmission/changes",
                     "EmailSubmission/query", "EmailSubmission/queryChanges",
                     "EmailSubmission/set"),
    cap.VACATION: ("VacationResponse/get", "VacationResponse/set"),
    cap.BLOB: ("Blob/upload", "Blob/get", "Blob/lookup"),
}

# capabilities served by an endpoint rather than by methods: advertised when
# the endpoint is complete (server/jmap.py serves /jmap/ws/)
ENDPOINT_CAPABILITIES: dict[str, bool] = {cap.WEBSOCKET: True}

# capabilities with per-account data (accountCapabilities)
ACCOUNT_CAPABILITIES = (cap.CORE, cap.MAIL, cap.SUBMISSION, cap.VACATION, cap.BLOB)

# what Email/query accepts (server/jmap_email_filter.py), so the Session
# resource can never promise more than the method does
COLLATIONS = list(jmap_email_filter.COLLATIONS)
EMAIL_SORT_OPTIONS = list(jmap_email_filter.SORT_OPTIONS)

API_PATH = "/jmap/api/"
DOWNLOAD_PATH = "/jmap/download/"
UPLOAD_PATH = "/jmap/upload/"
EVENTSOURCE_PATH = "/jmap/eventsource/"
WEBSOCKET_PATH = "/jmap/ws/"


def advertised(methods) -> list[str]:
    """The capabilities whose methods are all in METHODS (names registered)."""
    out = [c for c, need in REQUIRED_METHODS.items() if all(m in methods for m in need)]
    out += [c for c, done in ENDPOINT_CAPABILITIES.items() if done]
    # nothing is usable without core
    return out if cap.CORE in out else []


def _limits_json(limits: Limits) -> dict[str, Any]:
    return {
        "maxSizeUpload": limits.max_size_upload,
        "maxConcurrentUpload": limits.max_concurrent_upload,
        "maxSizeRequest": limits.max_size_request,
        "maxConcurrentRequests": limits.max_concurrent_requests,
        "maxCallsInRequest": limits.max_calls_in_request,
        "maxObjectsInGet": limits.max_objects_in_get,
        "maxObjectsInSet": limits.max_objects_in_set,
        "collationAlgorithms": COLLATIONS,
    }


def _ws_url(base: str) -> str:
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):] + WEBSOCKET_PATH
    return "ws://" + base[len("http://"):] + WEBSOCKET_PATH


def capability_objects(caps: list[str], limits: Limits, base: str) -> dict[str, Any]:
    objs: dict[str, Any] = {}
    for c in caps:
        if c == cap.CORE:
            objs[c] = _limits_json(limits)
        elif c == cap.WEBSOCKET:
            objs[c] = {"url": _ws_url(base), "supportsPush": True}
        else:
            objs[c] = {}
    return objs


def account_capabilities(caps: list[str], limits: Limits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in caps:
        if c not in ACCOUNT_CAPABILITIES:
            continue
        if c == cap.MAIL:
            out[c] = {"maxMailboxesPerEmail": None, "maxMailboxDepth": None,
                      "maxSizeMailboxName": 490,
                      "maxSizeAttachmentsPerEmail": limits.max_size_upload,
                      "emailQuerySortOptions": EMAIL_SORT_OPTIONS,
                      "mayCreateTopLevelMailbox": True}
        elif c == cap.SUBMISSION:
            out[c] = {"maxDelayedSend": 0, "submissionExtensions": {}}
        elif c == cap.BLOB:
            out[c] = {"maxSizeBlobSet": limits.max_size_upload, "maxDataSources": 64,
                      "supportedTypeNames": ["Mailbox", "Thread", "Email"],
                      "supportedDigestAlgorithms": ["sha"]}
        else:
            out[c] = {}
    return out


def session_resource(*, account: int, username: str, limits: Limits, base: str,
                     methods) -> dict[str, Any]:
    """The Session object for USERNAME (account ACCOUNT), URLs under BASE."""
    caps = advertised(methods)
    acc_id = ids.account_id(account)
    acc_caps = account_capabilities(caps, limits)
    body: dict[str, Any] = {
        "capabilities": capability_objects(caps, limits, base),
        "accounts": {acc_id: {"name": username, "isPersonal": True, "isReadOnly": False,
                              "accountCapabilities": acc_caps}},
        "primaryAccounts": {c: acc_id for c in acc_caps},
        "username": username,
        "apiUrl": base + API_PATH,
        "downloadUrl": base + DOWNLOAD_PATH + "{accountId}/{blobId}/{name}?accept={type}",
        "uploadUrl": base + UPLOAD_PATH + "{accountId}/",
        "eventSourceUrl": base + EVENTSOURCE_PATH
        + "?types={types}&closeafter={closeafter}&ping={ping}",
    }
    body["state"] = session_state(account=account, username=username, limits=limits,
                                  methods=methods)
    return body


def session_state(*, account: int, username: str, limits: Limits, methods) -> str:
    """A state string that changes whenever the Session object would (but
    for its URLs, which follow the Host the client used): the API endpoint
    sends it as ``sessionState``."""
    data = json.dumps([advertised(methods), _limits_json(limits), account, username],
                      separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]
