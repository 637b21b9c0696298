"""The span of one MIME entity inside the raw message bytes.

Both indexer twins build these, so the class lives outside ``_speedups`` and
an index built by either twin compares equal.
"""
from __future__ import annotations

from typing import NamedTuple


class Part(NamedTuple):
    """One IMAP body section, depth first, as byte offsets into the raw message.

    ``section`` is the IMAP section path ("" for the whole message, "1",
    "2.1", ...).  ``header_start..body_start`` is the part's own MIME header
    (blank line included), ``body_start..end`` its body.  For message/rfc822
    (and message/global) parts the encapsulated message's header runs from
    ``body_start`` to ``inner_body_start``; -1 otherwise.
    """

    section: str
    header_start: int
    body_start: int
    end: int
    content_type: str  # "type/subtype", lower case
    encoding: str  # content-transfer-encoding, lower case ("7bit" default)
    charset: str | None
    inner_body_start: int = -1
