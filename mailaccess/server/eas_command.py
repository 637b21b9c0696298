"""One ActiveSync command as server/eas.py runs it: the ``Command`` record
each command module lists in its ``COMMANDS``.

``run(ctx, body)`` gets an ``eas.EasContext`` and the decoded WBXML body
(``None`` when the request had none, or when ``raw_body`` is set and the
body is not WBXML: 12.x SendMail/SmartReply/SmartForward send
``message/rfc822``, read from ``ctx.http.body``).  It returns the response
root ``Element`` (encoded to WBXML by eas.py) or a ready ``http.Response``
(an empty 200, a multipart ItemOperations answer).  ``root`` and
``status_tag`` name the response's root and top-level Status element: eas.py
answers the common status codes (102 bad WBXML, 142-144 provisioning) with
them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable


@dataclass(frozen=True)
class Command:
    name: str                       # "Sync": the Cmd= value, canonical spelling
    run: Callable[..., Awaitable]   # async run(ctx, body) -> Element | Response
    root: str                       # "AirSync:Sync"
    status_tag: str                 # "AirSync:Status"
    needs_policy: bool = True       # False only for Provision
    raw_body: bool = False          # accepts a non-WBXML (MIME) body
    # the answer may carry message content (a Sync window of whole bodies:
    # 61 MB took 0.25 s to encode): encoded to WBXML in the worker pool
    big_answer: bool = False
