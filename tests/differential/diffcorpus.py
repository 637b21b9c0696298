"""About thirty varied messages for the differential tests, each with the flags and
internal date it is APPENDed with (None: no flags / no date).

Dates and times stay well away from midnight (in UTC and in the zones used) so
that SEARCH BEFORE/ON/SINCE and SENTBEFORE/SENTON/SENTSINCE have one meaning
whichever zone a server reckons the day in (RFC 3501 leaves that open).
"""
from __future__ import annotations

import base64


def _crlf(s: str) -> bytes:
    return s.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def _b64(data: bytes, width: int = 76) -> str:
    enc = base64.b64encode(data).decode()
    return "\n".join(enc[i:i + width] for i in range(0, len(enc), width))


PDF_BYTES = bytes(range(256)) * 3
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(40)) * 5
TEXT_B64 = "Hello from a base64 text part.\r\nSecond line with ümlaut.\r\n".encode("utf-8")

M: list[tuple[str, bytes, str | None, str | None]] = []   # (key, raw, flags, date)


def add(key, raw, flags=None, date=None):
    M.append((key, _crlf(raw) if isinstance(raw, str) else raw, flags, date))


# 1 plain
add("plain", """From: Alice Example <alice@example.org>
To: Bob <bob@example.net>
Subject: Plain hello
Date: Mon, 3 Nov 2025 10:00:00 +0000
Message-ID: <plain-1@example.org>

Just a plain body with the word zebra in it.
""", r"(\Seen)", "03-Nov-2025 10:00:00 +0000")

# 2 encoded words in subject and display name, iso-8859-1 body
add("encoded", """From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>
To: =?ISO-8859-1?Q?Andr=E9?= <andre@example.fr>, carol@example.com
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?= und mehr
Date: Tue, 4 Nov 2025 11:30:00 +0100
Message-ID: <encoded-2@example.de>
MIME-Version: 1.0
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Sch=F6ne Gr=FC=DFe, caf=E9 time.
""", r"(\Flagged $Forwarded)", "04-Nov-2025 10:30:00 +0000")

# 3 multipart/alternative
add("alternative", """From: News <news@example.com>
To: alice@example.org
Subject: Weekly newsletter
Date: Wed, 5 Nov 2025 09:15:00 -0500
Message-ID: <alt-3@example.com>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt-boundary"

This is a multi-part message in MIME format.

--alt-boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 7bit

Plain version of the newsletter. Giraffe.

--alt-boundary
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body><p>HTML version of the newsletter. <b>Giraffe</b>.</p></body></ht=
ml>

--alt-boundary--
""", None, "05-Nov-2025 14:15:00 +0000")

# 4 mixed with base64 attachment, disposition, language, location, md5
add("mixed-attach", f"""From: Carol <carol@example.com>
To: Alice <alice@example.org>
Cc: Dave <dave@example.com>
Subject: Report attached
Date: Thu, 6 Nov 2025 12:00:00 +0000
Message-ID: <mixed-4@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix-b"

--mix-b
Content-Type: text/plain; charset=us-ascii
Content-Language: en

Please find the report attached. Aardvark.

--mix-b
Content-Type: application/pdf; name="report.pdf"
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename="report.pdf"; size=768
Content-Description: The quarterly report
Content-ID: <part2.report@example.com>
Content-Language: en, de
Content-Location: http://example.com/report.pdf
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==

{_b64(PDF_BYTES)}
--mix-b--
""", r"(\Answered custom1)", "06-Nov-2025 12:00:00 +0000")

# 5 nested message/rfc822, itself multipart
add("nested", """From: Dave <dave@example.com>
To: Alice <alice@example.org>
Subject: Fwd: Original discussion
Date: Fri, 7 Nov 2025 08:00:00 +0000
Message-ID: <nested-5@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: text/plain

See the forwarded message below.

--outer
Content-Type: message/rfc822
Content-Disposition: inline

From: Eve <eve@example.net>
To: Dave <dave@example.com>
Subject: Original discussion
Date: Thu, 30 Oct 2025 16:45:00 +0000
Message-ID: <inner-5@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

Inner plain text about a wombat.

--inner
Content-Type: text/html; charset=utf-8

<p>Inner html about a wombat.</p>

--inner--

--outer--
""", r"($Forwarded)", "07-Nov-2025 08:00:00 +0000")

# 6 groups in address lists
add("groups", """From: Frank <frank@example.com>
To: undisclosed-recipients:;
Cc: Team: anna@example.com, "Ben B." <ben@example.com>;, solo@example.com
Subject: Group addresses
Date: Sat, 8 Nov 2025 13:00:00 +0000
Message-ID: <groups-6@example.com>

Group test body.
""", None, "08-Nov-2025 13:00:00 +0000")

# 7 missing headers: no Date, no Subject, no Message-ID, no To
add("missing", """From: ghost@example.com

A message missing most headers. Phantom.
""", r"(\Draft)", "09-Nov-2025 15:00:00 +0000")

# 8 no From at all, no headers but Subject
add("nofrom", """Subject: Anonymous note

Who sent this?
""", None, "10-Nov-2025 09:00:00 +0000")

# 9 sender, reply-to, bcc, in-reply-to, comments, quoted local part
add("addresses", """From: "Smith, John" <john.smith@example.com> (the boss)
Sender: Secretary <sec@example.com>
Reply-To: replies@example.com
To: "john doe"@example.org, <bare@example.org>
Bcc: hidden@example.org
Subject: Addresses galore
Date: Sun, 9 Nov 2025 17:20:00 -0800
Message-ID: <addr-9@example.com>
In-Reply-To: <plain-1@example.org>

Address body.
""", r"(\Seen \Flagged)", "10-Nov-2025 01:20:00 +0000")

# 10 quoted-printable, long folded header
add("qp-folded", """From: Grace <grace@example.com>
To: alice@example.org
Subject: A rather long subject line that is folded
  over two lines for testing purposes
X-Custom-Header: value one
X-Custom-Header: value two
Date: Mon, 10 Nov 2025 10:00:00 +0000
Message-ID: <qp-10@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8; format=flowed
Content-Transfer-Encoding: quoted-printable

Soft line break here=
 continues. Equals =3D sign and caf=C3=A9.
""", None, "11-Nov-2025 10:00:00 +0000")

# 11 base64 text part inside multipart (BINARY[1]) + inline image (related)
add("related-b64", f"""From: Heidi <heidi@example.com>
To: alice@example.org
Subject: Related with image
Date: Tue, 11 Nov 2025 11:00:00 +0000
Message-ID: <rel-11@example.com>
MIME-Version: 1.0
Content-Type: multipart/related; boundary="rel"; type="text/plain"

--rel
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

{_b64(TEXT_B64)}
--rel
Content-Type: image/png
Content-Transfer-Encoding: base64
Content-ID: <img1@example.com>
Content-Disposition: inline

{_b64(PNG_BYTES)}
--rel--
""", r"(\Seen)", "12-Nov-2025 11:00:00 +0000")

# 12 single-part base64 message
add("single-b64", f"""From: Ivan <ivan@example.com>
To: alice@example.org
Subject: Single base64
Date: Wed, 12 Nov 2025 12:00:00 +0000
Message-ID: <sb-12@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

{_b64(TEXT_B64)}
""", None, "13-Nov-2025 12:00:00 +0000")

# 13 empty body
add("empty-body", """From: Judy <judy@example.com>
To: alice@example.org
Subject: Empty
Date: Thu, 13 Nov 2025 13:00:00 +0000
Message-ID: <empty-13@example.com>

""", r"(\Deleted)", "14-Nov-2025 13:00:00 +0000")

# 14 large message for LARGER / SMALLER
add("large", "From: Ken <ken@example.com>\nTo: alice@example.org\nSubject: Large one\n"
    "Date: Fri, 14 Nov 2025 14:00:00 +0000\nMessage-ID: <large-14@example.com>\n\n"
    + "".join(f"Line {i:05d} of a fairly long message body, padding padding.\n" for i in range(400)),
    None, "15-Nov-2025 14:00:00 +0000")

# 15-22 a threaded set (References / In-Reply-To / subjects)
add("thread-root", """From: Leo <leo@example.com>
To: list@example.org
Subject: Project kickoff
Date: Sat, 15 Nov 2025 09:00:00 +0000
Message-ID: <t-root@example.com>

Kickoff.
""", None, "16-Nov-2025 09:00:00 +0000")
add("thread-r1", """From: Mia <mia@example.com>
To: list@example.org
Subject: Re: Project kickoff
Date: Sat, 15 Nov 2025 10:00:00 +0000
Message-ID: <t-r1@example.com>
In-Reply-To: <t-root@example.com>
References: <t-root@example.com>

Reply one.
""", r"(\Seen)", "16-Nov-2025 10:00:00 +0000")
add("thread-r2", """From: Ned <ned@example.com>
To: list@example.org
Subject: RE: Project kickoff
Date: Sat, 15 Nov 2025 11:00:00 +0000
Message-ID: <t-r2@example.com>
In-Reply-To: <t-r1@example.com>
References: <t-root@example.com> <t-r1@example.com>

Reply to reply.
""", None, "16-Nov-2025 11:00:00 +0000")
add("thread-r3", """From: Olga <olga@example.com>
To: list@example.org
Subject: Re: [list] Project kickoff
Date: Sat, 15 Nov 2025 12:00:00 +0000
Message-ID: <t-r3@example.com>
References: <t-root@example.com>

Second reply to root.
""", None, "16-Nov-2025 12:00:00 +0000")
add("thread-subj-only", """From: Paul <paul@example.com>
To: list@example.org
Subject: Fwd: Project kickoff
Date: Sat, 15 Nov 2025 13:00:00 +0000
Message-ID: <t-s@example.com>

No references, same base subject.
""", None, "16-Nov-2025 13:00:00 +0000")
add("thread-missing-parent", """From: Quinn <quinn@example.com>
To: list@example.org
Subject: Re: Budget
Date: Sun, 16 Nov 2025 09:00:00 +0000
Message-ID: <t-b2@example.com>
In-Reply-To: <t-b1-missing@example.com>
References: <t-b0-missing@example.com> <t-b1-missing@example.com>

Parent not here.
""", None, "17-Nov-2025 09:00:00 +0000")
add("thread-sibling", """From: Rita <rita@example.com>
To: list@example.org
Subject: Re: Budget
Date: Sun, 16 Nov 2025 10:00:00 +0000
Message-ID: <t-b3@example.com>
References: <t-b0-missing@example.com> <t-b1-missing@example.com>

Sibling under the missing parent.
""", r"(\Seen)", "17-Nov-2025 10:00:00 +0000")
add("thread-late-root", """From: Sam <sam@example.com>
To: list@example.org
Subject: Budget
Date: Sat, 1 Nov 2025 09:00:00 +0000
Message-ID: <t-b0-missing@example.com>

The budget root, arriving late but dated early.
""", None, "17-Nov-2025 11:00:00 +0000")

# 23 cc only / reply-to group / subject with brackets and tabs
add("cc-only", """From: Tina <tina@example.com>
Cc: alice@example.org
Subject: [PATCH 2/3]\tTabs and brackets
Date: Mon, 17 Nov 2025 10:00:00 +0000
Message-ID: <cc-23@example.com>

diff --git a/x b/x
""", r"(\Flagged)", "18-Nov-2025 10:00:00 +0000")

# 24 multipart/mixed with an empty part and a part without headers
add("odd-parts", """From: Uma <uma@example.com>
To: alice@example.org
Subject: Odd parts
Date: Tue, 18 Nov 2025 10:00:00 +0000
Message-ID: <odd-24@example.com>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=plainbound

preamble text
--plainbound

Part with no headers at all.
--plainbound
Content-Type: text/plain

--plainbound
Content-Type: text/x-custom; charset="UTF-8"; Extra="Quoted Value"

Custom type part.
--plainbound--
epilogue text
""", None, "19-Nov-2025 10:00:00 +0000")

# 25 8bit utf-8 body without declared charset, unicode subject via encoded word in Q with underscores
add("utf8-body", """From: =?utf-8?q?Zo=C3=AB_Quinn?= <zoe@example.com>
To: alice@example.org
Subject: =?utf-8?q?=C3=89t=C3=A9?= =?utf-8?q?_summer?=
Date: Wed, 19 Nov 2025 10:00:00 +0000
Message-ID: <utf8-25@example.com>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Été à la plage. Ölfass.
""", r"($Junk)", "20-Nov-2025 10:00:00 +0000")

# 26 text/html only
add("html-only", """From: Victor <victor@example.com>
To: alice@example.org
Subject: HTML only
Date: Thu, 20 Nov 2025 10:00:00 +0000
Message-ID: <html-26@example.com>
MIME-Version: 1.0
Content-Type: text/html; charset=us-ascii

<html><body>Only <i>html</i> here, ocelot.</body></html>
""", None, "21-Nov-2025 10:00:00 +0000")

# 27 message/rfc822 directly as the body
add("rfc822-body", """From: Wendy <wendy@example.com>
To: alice@example.org
Subject: Bounce
Date: Fri, 21 Nov 2025 10:00:00 +0000
Message-ID: <bounce-27@example.com>
MIME-Version: 1.0
Content-Type: message/rfc822

From: Xavier <xavier@example.com>
To: wendy@example.com
Subject: Undelivered thing
Date: Fri, 21 Nov 2025 09:00:00 +0000

Original text, kiwi.
""", None, "22-Nov-2025 10:00:00 +0000")

# 28 multiple From, To with many recipients, Date with obsolete zone name
add("multi-from", """From: Yara <yara@example.com>, Zed <zed@example.com>
To: a1@example.com, a2@example.com, a3@example.com
Subject: Two authors
Date: Sat, 22 Nov 2025 10:00:00 GMT
Message-ID: <multi-28@example.com>

Two authors body.
""", r"(\Seen \Answered)", "23-Nov-2025 10:00:00 +0000")

# 29 appended with a non-UTC internal date zone
add("zone-date", """From: Bob <bob@example.net>
To: alice@example.org
Subject: Zoned internal date
Date: Sun, 23 Nov 2025 10:00:00 +0000
Message-ID: <zone-29@example.net>

Zone.
""", r"(Custom2 custom1)", "24-Nov-2025 15:00:00 +0530")

# 30 multipart/signed-like with application/pgp-signature and 7bit params
add("signed", """From: Carol <carol@example.com>
To: alice@example.org
Subject: Signed message
Date: Mon, 24 Nov 2025 10:00:00 +0000
Message-ID: <signed-30@example.com>
MIME-Version: 1.0
Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"; boundary="sig"

--sig
Content-Type: text/plain; charset=us-ascii

Signed body text.
--sig
Content-Type: application/pgp-signature; name="signature.asc"
Content-Description: OpenPGP digital signature

-----BEGIN PGP SIGNATURE-----
abc
-----END PGP SIGNATURE-----
--sig--
""", None, "25-Nov-2025 10:00:00 +0000")

KEYS = [k for k, *_ in M]


def seq(key: str) -> int:
    return KEYS.index(key) + 1
