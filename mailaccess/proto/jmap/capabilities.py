"""The capability URNs the server knows (RFC 8620 §2, RFC 8621 §1.3, RFC 8887).

A capability is listed in the Session resource only when every method it
names works (the server does not advertise what is not finished).
"""
from __future__ import annotations

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
SUBMISSION = "urn:ietf:params:jmap:submission"
VACATION = "urn:ietf:params:jmap:vacationresponse"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
BLOB = "urn:ietf:params:jmap:blob"
