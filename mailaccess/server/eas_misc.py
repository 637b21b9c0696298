"""The small ActiveSync commands, answered minimally but validly:
ResolveRecipients (MS-ASCMD 2.2.1.15), ValidateCert (2.2.1.22) and
MeetingResponse (2.2.1.11).

* ResolveRecipients: each ``To`` (at most 100, else Status 5 protocol
  error, 2.2.3.183) is resolved against this server's own accounts, the
  "directory" a phone can ask about: an address resolves when LMTP would
  deliver it to an account (the account's name at a local domain, a
  ``+detail`` of it, or an account named by the whole address); a name
  without ``@`` matches accounts whose name, or whose identities' names
  (JMAP Identity), start with it (case-insensitive); so does a ``To`` that
  is not one readable mailbox (several addresses, a malformed one), the
  same on every Python (outbound.addresses.parse_field reads it).
  Response Status (2.2.3.177.12): 1 one match, 2 several (all listed as
  suggestions), 3 several and more than ``MaxAmbiguousRecipients`` (the
  list is partial), 4 no match.  Recipients are Type 1 (a directory
  entry).  The options we cannot serve get their own "none" answer:
  CertificateRetrieval -> ``Certificates`` Status 7 (no valid
  certificate) with CertificateCount 0; Availability -> ``Availability``
  Status 163 (free/busy failed: there is no calendar); Picture ->
  ``Picture`` Status 173 (no photo).  The lookups run in the worker pool
  (storeio.read), on one snapshot: the account list and each account's
  identities are read once per request, into a sorted word index that each
  name ``To`` searches by bisection (the per-query scan took 5 s for 100
  ``To`` over 10,000 accounts, on the event loop).
* ValidateCert: the server does not validate certificates (it has no trust
  store for S/MIME): the command Status is 1 and every certificate gets
  Status 17 ("an unknown server error has occurred", 2.2.3.177.18), which
  tells the phone that the server could not vouch for it; a request with no
  certificate is Status 2 (protocol error).
* MeetingResponse: there is no calendar here, so no email is a meeting
  request this server could answer for: every Request gets a Result with
  its RequestId and Status 2 ("invalid meeting request", 2.2.3.177.9);
  nothing is changed.

None of them keeps device state.
"""
from __future__ import annotations

import bisect

from .. import storeio
from ..outbound import addresses
from ..proto.eas.wbxml import E, Element
from .eas_command import Command

MAX_TO = 100
MAX_QUERY = 998         # characters of a To read as one address (RFC 5322 line)
DEFAULT_MAX_AMBIGUOUS = 20

# ResolveRecipients statuses (MS-ASCMD 2.2.3.177.12)
RR_OK, RR_PROTOCOL_ERROR = 1, 5
RESP_OK, RESP_AMBIGUOUS, RESP_AMBIGUOUS_PARTIAL, RESP_NOT_FOUND = 1, 2, 3, 4
CERTS_NONE = 7
AVAILABILITY_FAILED = 163
PICTURE_NONE = 173

# ValidateCert statuses (2.2.3.177.18)
VC_OK, VC_PROTOCOL_ERROR, VC_UNKNOWN_SERVER_ERROR = 1, 2, 17

# MeetingResponse statuses (2.2.3.177.9)
MR_INVALID_MEETING_REQUEST = 2


# --- ResolveRecipients -----------------------------------------------------------------------

def _display_names(view, acc) -> dict[str, str]:
    """address (lowercase) -> an identity's display name, for account ACC."""
    return {r.get("email", "").lower(): r.get("name", "")
            for r in view.identities(acc.id).values() if r.get("name")}


def _entry(view, cfg, acc, address: str | None = None,
           names: dict[str, str] | None = None) -> tuple[str, str]:
    """(display name, address) of account ACC in the directory (NAMES: its
    _display_names, when the caller has them)."""
    primary = addresses.default_address(acc.name, cfg.lmtp.local_domains, cfg.hostname)
    address = address or primary
    if names is None:
        names = _display_names(view, acc)
    return names.get(address.lower()) or names.get(primary.lower()) or acc.name, address


def _one_address(query: str) -> str:
    """The address of QUERY when it is one mailbox ("a@x", "Name <a@x>"),
    else "" (a name, several addresses, or what cannot be read).  Read by
    outbound.addresses.parse_field, which answers the same on every Python:
    email.utils.parseaddr does not (for "a@x, b@y" or "a@x)<b@y>", 3.11.7
    gives a@x, a release with the CVE-2023-27043 fix ('', '')).  A query
    longer than a header line (MAX_QUERY) is none: the parser took 2 s for
    9 MB, and a To may hold 16 MB."""
    if len(query) > MAX_QUERY:
        return ""
    pairs = addresses.parse_field(query)
    if pairs is None or len(pairs) != 1:
        return ""
    return pairs[0][1]


class _Directory:
    """The accounts as one request's name search sees them: read once (each
    account's identities once), then each name ``To`` is a binary search in
    the sorted words.  An account matches a name when its name, one of its
    identities' display names, or a word of one, starts with it
    (case-insensitive); the words starting with Q are one run of the sorted
    list, from bisect_left(Q).  Built per request on the request's snapshot,
    so it cannot go stale when accounts or identities change."""

    def __init__(self, view):
        self.accounts = sorted(view.accounts(), key=lambda a: a.name)
        self.names = [_display_names(view, a) for a in self.accounts]
        words = []
        for i, (acc, names) in enumerate(zip(self.accounts, self.names)):
            words.append((acc.name.casefold(), i))
            for n in names.values():
                words.extend((w.casefold(), i) for w in [n] + n.split())
        words.sort()
        self.keys = [w for w, _ in words]
        self.owner = [i for _, i in words]

    def matches(self, q: str) -> list[int]:
        """Indexes (in name order) of the accounts Q (casefolded) names."""
        keys, found = self.keys, set()
        j = bisect.bisect_left(keys, q)
        while j < len(keys) and keys[j].startswith(q):
            found.add(self.owner[j])
            j += 1
        return sorted(found)


def _by_address(view, cfg, addr: str) -> list[tuple[str, str]]:
    """The entry of the account LMTP would deliver ADDR to, if any."""
    local, _, domain = addr.rpartition("@")
    base = local.partition("+")[0]
    acc = None
    if domain.lower() in [d.lower() for d in cfg.lmtp.local_domains] and base:
        acc = view.account_by_name(base)
    if acc is None:
        acc = view.account_by_name(addr)
    return [_entry(view, cfg, acc, addr)] if acc is not None else []


def resolve(view, cfg, query: str) -> list[tuple[str, str]]:
    """The directory entries (display name, address) QUERY names."""
    return resolve_all(view, cfg, [query])[0][1]


def resolve_all(view, cfg, queries: list[str], limit: int | None = None
                ) -> list[tuple[int, list[tuple[str, str]]]]:
    """(how many entries, the first LIMIT of them) of each query, on one
    snapshot; the account list is read once, and only when some query is a
    name.  Grows with the accounts (and their identities): runs in the
    worker pool."""
    directory = None
    out = []
    for query in queries:
        addr = _one_address(query)
        if "@" in addr:
            hit = _by_address(view, cfg, addr)
            out.append((len(hit), hit))
            continue
        q = query.strip().casefold()
        if not q:
            out.append((0, []))
            continue
        if directory is None:
            directory = _Directory(view)
        hits = directory.matches(q)
        out.append((len(hits), [_entry(view, cfg, directory.accounts[i], names=directory.names[i])
                                for i in hits[:limit]]))
    return out


def _int(el: Element | None, tag: str, default: int) -> int:
    s = el.child_text(tag) if el is not None else None
    try:
        return int(s) if s is not None else default
    except ValueError:
        return default


async def resolve_recipients(ctx, body: Element | None) -> Element:
    root = "ResolveRecipients:ResolveRecipients"
    tos = body.findall("ResolveRecipients:To") if body is not None and body.qname == root \
        else []
    if not tos or len(tos) > MAX_TO:
        return E(root, E("ResolveRecipients:Status", text=str(RR_PROTOCOL_ERROR)))
    opts = body.find("ResolveRecipients:Options")
    certs = _int(opts, "ResolveRecipients:CertificateRetrieval", 1) in (2, 3)
    avail = opts is not None and opts.find("ResolveRecipients:Availability") is not None
    picture = opts is not None and opts.find("ResolveRecipients:Picture") is not None
    max_amb = _int(opts, "ResolveRecipients:MaxAmbiguousRecipients", DEFAULT_MAX_AMBIGUOUS)
    max_amb = max(0, min(max_amb, 9999))
    out = [E("ResolveRecipients:Status", text=str(RR_OK))]
    queries = [t.text or "" for t in tos]
    # one match is shown whatever MaxAmbiguousRecipients says
    found = await storeio.read(ctx.store, resolve_all, ctx.app.cfg, queries, max(1, max_amb))
    for query, (count, hits) in zip(queries, found):
        if not count:
            status, shown = RESP_NOT_FOUND, []
        elif count == 1:
            status, shown = RESP_OK, hits
        else:
            shown = hits[:max_amb]
            status = RESP_AMBIGUOUS if len(shown) == count else RESP_AMBIGUOUS_PARTIAL
        recips = []
        for display, addr in shown:
            kids = [E("ResolveRecipients:Type", text="1"),
                    E("ResolveRecipients:DisplayName", text=display),
                    E("ResolveRecipients:EmailAddress", text=addr)]
            if avail and status == RESP_OK:
                kids.append(E("ResolveRecipients:Availability",
                              E("ResolveRecipients:Status", text=str(AVAILABILITY_FAILED))))
            if certs:
                kids.append(E("ResolveRecipients:Certificates",
                              E("ResolveRecipients:Status", text=str(CERTS_NONE)),
                              E("ResolveRecipients:CertificateCount", text="0")))
            if picture:
                kids.append(E("ResolveRecipients:Picture",
                              E("ResolveRecipients:Status", text=str(PICTURE_NONE))))
            recips.append(E("ResolveRecipients:Recipient", *kids))
        out.append(E("ResolveRecipients:Response",
                     E("ResolveRecipients:To", text=query),
                     E("ResolveRecipients:Status", text=str(status)),
                     E("ResolveRecipients:RecipientCount", text=str(count)),
                     *recips))
    return E(root, *out)


# --- ValidateCert ------------------------------------------------------------------------------

async def validate_cert(ctx, body: Element | None) -> Element:
    root = "ValidateCert:ValidateCert"
    certs_el = body.find("ValidateCert:Certificates") if body is not None and \
        body.qname == root else None
    certs = certs_el.findall("ValidateCert:Certificate") if certs_el is not None else []
    if not certs:
        return E(root, E("ValidateCert:Status", text=str(VC_PROTOCOL_ERROR)))
    return E(root, E("ValidateCert:Status", text=str(VC_OK)),
             *[E("ValidateCert:Certificate",
                 E("ValidateCert:Status", text=str(VC_UNKNOWN_SERVER_ERROR))) for _ in certs])


# --- MeetingResponse ---------------------------------------------------------------------------

async def meeting_response(ctx, body: Element | None) -> Element:
    root = "MeetingResponse:MeetingResponse"
    reqs = body.findall("MeetingResponse:Request") if body is not None and \
        body.qname == root else []
    results = []
    for r in reqs:
        kids = []
        rid = r.child_text("MeetingResponse:RequestId")
        if rid is not None:
            kids.append(E("MeetingResponse:RequestId", text=rid))
        kids.append(E("MeetingResponse:Status", text=str(MR_INVALID_MEETING_REQUEST)))
        results.append(E("MeetingResponse:Result", *kids))
    if not results:
        # no Request: answered like eas.py's request-level statuses (a Status under the root)
        return E(root, E("MeetingResponse:Status", text=str(MR_INVALID_MEETING_REQUEST)))
    return E(root, *results)


COMMANDS = [
    Command("ResolveRecipients", resolve_recipients, "ResolveRecipients:ResolveRecipients",
            "ResolveRecipients:Status"),
    Command("ValidateCert", validate_cert, "ValidateCert:ValidateCert", "ValidateCert:Status"),
    Command("MeetingResponse", meeting_response, "MeetingResponse:MeetingResponse",
            "MeetingResponse:Status"),
]
