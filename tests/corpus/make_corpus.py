"""Deterministic generator of varied (and often ugly) RFC 5322 messages.

``generate(n, seed, scale)`` returns n raw messages: plain text, alternative,
mixed with attachments, forwarded message/rfc822, digests, related with inline
images, many charsets and encoded words, QP/base64, long folded headers, bare
LF line endings, and broken MIME.  ``scale`` multiplies body sizes (the bench
uses a larger scale for realistic 2-50 KB messages).  ``ugly_files()`` lists
the hand-made .eml files next to this module.
"""
from __future__ import annotations

import base64
import pathlib
import quopri
import random

HERE = pathlib.Path(__file__).parent

WORDS = (
    "the quick brown fox jumps over lazy dog meeting agenda invoice report budget "
    "project deadline review minutes lunch server mailbox protocol release draft "
    "please confirm attached thanks regards tomorrow schedule café naïve résumé "
    "Größe straße über déjà vu Ελληνικά русский текст 日本語 中文 한국어 emoji 🙂"
).split()
ASCII_WORDS = [w for w in WORDS if w.isascii()]
NAMES = ["Alice Example", "Bob O'Neil", "Jörg Müller", "Zoë Ångström", "李雷", "Иван Петров",
         "Smith, John", "Dr. Who", "José Núñez"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "xn--bcher-kva.example"]
CHARSETS = ["utf-8", "iso-8859-1", "iso-8859-15", "windows-1252", "koi8-r", "windows-1251",
            "shift_jis", "euc-jp", "iso-2022-jp", "gb2312", "big5", "euc-kr", "iso-8859-7",
            "utf-16", "x-unknown-charset"]


def _text(rng: random.Random, nwords: int, ascii_only: bool = False) -> str:
    words = ASCII_WORDS if ascii_only else WORDS
    lines = []
    line = []
    for _ in range(nwords):
        line.append(rng.choice(words))
        if len(line) > rng.randint(6, 14):
            lines.append(" ".join(line))
            line = []
            if rng.random() < 0.15:
                lines.append("")
    lines.append(" ".join(line))
    return "\n".join(lines) + "\n"


def _encoded_word(rng: random.Random, text: str) -> str:
    for cs in rng.sample(CHARSETS[:-2], 4) + ["utf-8"]:
        try:
            data = text.encode(cs)
            break
        except UnicodeEncodeError:
            continue
    if rng.random() < 0.5:
        return f"=?{cs}?B?{base64.b64encode(data).decode()}?="
    q = "".join(chr(b) if (48 <= b < 123 and chr(b).isalnum()) else ("_" if b == 32 else "=%02X" % b)
                for b in data)
    return f"=?{cs}?Q?{q}?="


def _phrase(rng: random.Random, text: str) -> str:
    if text.isascii():
        return f'"{text}"' if any(c in text for c in ",.'") else text
    return _encoded_word(rng, text)


def _addr(rng: random.Random) -> str:
    name = rng.choice(NAMES)
    local = rng.choice(["alice", "bob", "j.mueller", "info+tag", "x_y", "postmaster"])
    dom = rng.choice(DOMAINS)
    style = rng.random()
    if style < 0.6:
        return f"{_phrase(rng, name)} <{local}@{dom}>"
    if style < 0.75:
        return f"{local}@{dom}"
    if style < 0.85:
        return f"{local}@{dom} ({name if name.isascii() else 'comment'})"
    if style < 0.95:
        return f"<{local}@{dom}>"
    return f"undisclosed-recipients:;"


def _subject(rng: random.Random) -> str:
    prefix = rng.choice(["", "", "Re: ", "RE: Re: ", "Fwd: ", "[list] Re: ", "Fw: "])
    body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9)))
    if body.isascii() and rng.random() < 0.7:
        return prefix + body
    words = body.split(" ")
    return prefix + " ".join(_encoded_word(rng, w) for w in words)


def _fold(name: str, value: str, width: int = 76) -> str:
    out = name + ":"
    line = len(out)
    for word in value.split(" "):
        if line + len(word) + 1 > width and line > len(name) + 1:
            out += "\r\n"
            line = 0
        out += " " + word
        line += len(word) + 1
    return out


def _headers(rng: random.Random, extra: list[str]) -> list[str]:
    h = []
    for _ in range(rng.randint(0, 6)):
        h.append(_fold("Received", f"from mx{rng.randint(1, 9)}.example.net (mx.example.net "
                       f"[192.0.2.{rng.randint(1, 254)}]) by mail.example.com with ESMTPS id "
                       f"{rng.getrandbits(48):x}; Tue, {rng.randint(1, 28)} Mar 2023 10:00:00 +0000"))
    day = rng.randint(1, 28)
    tz = rng.choice(["+0000", "-0700", "+0530", "+0100", "GMT", "EST", "", "(garbage)"])
    if rng.random() < 0.9:
        h.append(f"Date: {rng.choice(['Mon', 'Tue', 'Wed'])}, {day} "
                 f"{rng.choice(['Jan', 'Feb', 'Mar', 'Dec'])} {rng.choice([1999, 2021, 2024, 99])} "
                 f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} {tz}".rstrip())
    h.append(_fold("From", _addr(rng)))
    if rng.random() < 0.2:
        h.append(_fold("Sender", _addr(rng)))
    if rng.random() < 0.3:
        h.append(_fold("Reply-To", _addr(rng)))
    h.append(_fold("To", ", ".join(_addr(rng) for _ in range(rng.randint(1, 6)))))
    if rng.random() < 0.4:
        h.append(_fold("Cc", ", ".join(_addr(rng) for _ in range(rng.randint(1, 4)))))
    if rng.random() < 0.05:
        h.append("To: Friends: a@example.com, \"B, b\" <b@example.com>;, c@example.org")
    h.append(_fold("Subject", _subject(rng)))
    if rng.random() < 0.95:
        h.append(f"Message-ID: <{rng.getrandbits(64):x}.{rng.randint(1, 999)}@{rng.choice(DOMAINS)}>")
    if rng.random() < 0.4:
        refs = [f"<{rng.getrandbits(40):x}@{rng.choice(DOMAINS)}>" for _ in range(rng.randint(1, 40))]
        h.append(f"In-Reply-To: {refs[-1]}")
        h.append(_fold("References", " ".join(refs)))
    if rng.random() < 0.3:
        h.append(f"X-Mailer: Generator {rng.randint(1, 9)}.{rng.randint(0, 9)}")
        h.append(_fold("DKIM-Signature", "v=1; a=rsa-sha256; d=example.com; s=sel; b="
                       + " ".join(base64.b64encode(rng.randbytes(180)).decode()[i:i + 60]
                                  for i in range(0, 240, 60))))
    h.append("MIME-Version: 1.0")
    return h + extra


def _text_part(rng: random.Random, nwords: int, html: bool = False) -> tuple[list[str], bytes]:
    text = _text(rng, nwords)
    if html:
        paras = "".join(f"<p>{p.replace('&', '&amp;')}</p>\n" for p in text.split("\n\n"))
        text = (f"<html><head><style>p {{ color: red }}</style><title>t</title></head><body>"
                f"<div>{paras}</div><br>&copy; &#8364; &nbsp;</body></html>\n")
    cs = rng.choice(["utf-8", "utf-8", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "us-ascii"])
    data = text.encode(cs, "replace") if cs != "us-ascii" else text.encode("ascii", "replace")
    enc = rng.choice(["quoted-printable", "base64", "8bit", "7bit"])
    if enc == "7bit" and not data.isascii():
        enc = "quoted-printable"
    if enc == "quoted-printable":
        body = quopri.encodestring(data.replace(b"\n", b"\r\n"))
    elif enc == "base64":
        body = base64.encodebytes(data)
    else:
        body = data
    sub = "html" if html else "plain"
    qcs = '"' + cs + '"' if rng.random() < 0.5 else cs
    hdr = [f"Content-Type: text/{sub}; charset={qcs}", f"Content-Transfer-Encoding: {enc}"]
    return hdr, body


def _attachment(rng: random.Random, scale: float) -> tuple[list[str], bytes]:
    kind = rng.choice(["application/pdf", "image/png", "text/plain", "application/octet-stream"])
    name = rng.choice(["report.pdf", "logo.png", "notes.txt", "Größe übersicht.xlsx", "файл.doc",
                       "a very long file name that goes on and on and on and on and on.zip"])
    size = int(rng.randint(200, 8000) * scale)
    data = rng.randbytes(size)
    if name.isascii():
        disp = f'attachment; filename="{name}"'
        ct = f'{kind}; name="{name}"'
    elif rng.random() < 0.5:
        from urllib.parse import quote
        q = quote(name.encode("utf-8"))
        disp = f"attachment; filename*=utf-8''{q}"
        ct = f"{kind}; name*=UTF-8''{q}"
    else:
        from urllib.parse import quote
        q = quote(name.encode("utf-8"))
        disp = "attachment;\r\n filename*0*=utf-8''" + q[:10] + ";\r\n filename*1*=" + q[10:]
        ct = f'{kind}; name="{_encoded_word(rng, name)}"'
    hdr = [f"Content-Type: {ct}", "Content-Transfer-Encoding: base64",
           _fold("Content-Disposition", disp) if "\r\n" not in disp else "Content-Disposition: " + disp]
    if rng.random() < 0.3:
        hdr.append(f"Content-ID: <part{rng.getrandbits(32):x}@example.com>")
    return hdr, base64.encodebytes(data)


def _multipart(rng: random.Random, subtype: str, parts: list[tuple[list[str], bytes]],
               close: bool = True) -> tuple[list[str], bytes]:
    boundary = f"=_b{rng.getrandbits(40):x}" + rng.choice(["", "'()+_,-./:=?", ""])
    quote = '"' if not boundary.replace("=", "").replace("_", "").isalnum() or rng.random() < 0.5 else ""
    out = [b"This is a multi-part message in MIME format.\r\n"] if rng.random() < 0.5 else []
    for hdr, body in parts:
        out.append(b"--" + boundary.encode() + b"\r\n")
        out.append("\r\n".join(hdr).encode("utf-8") + b"\r\n\r\n")
        out.append(body if body.endswith(b"\n") else body + b"\r\n")
    if close:
        out.append(b"--" + boundary.encode() + b"--\r\n")
        if rng.random() < 0.3:
            out.append(b"epilogue text\r\n")
    return [f"Content-Type: multipart/{subtype}; boundary={quote}{boundary}{quote}"], b"".join(out)


def _message(rng: random.Random, scale: float, depth: int = 0) -> bytes:
    kind = rng.random()
    nwords = int(rng.randint(20, 900) * scale)
    if kind < 0.3:
        hdr, body = _text_part(rng, nwords)
    elif kind < 0.55:
        hdr, body = _multipart(rng, "alternative",
                               [_text_part(rng, nwords), _text_part(rng, nwords, html=True)])
    elif kind < 0.75:
        body_part = _multipart(rng, "alternative",
                               [_text_part(rng, nwords), _text_part(rng, nwords, html=True)]) \
            if rng.random() < 0.5 else _text_part(rng, nwords)
        atts = [_attachment(rng, scale) for _ in range(rng.randint(1, 3))]
        hdr, body = _multipart(rng, "mixed", [body_part] + atts, close=rng.random() < 0.9)
    elif kind < 0.85 and depth < 3:
        inner = _message(rng, scale * 0.5, depth + 1)
        fwd = (["Content-Type: message/rfc822", "Content-Disposition: inline"], inner)
        hdr, body = _multipart(rng, "mixed", [_text_part(rng, 30), fwd])
    elif kind < 0.9:
        related = _multipart(rng, "related", [_text_part(rng, nwords, html=True),
                                              _attachment(rng, scale * 0.3)])
        hdr, body = _multipart(rng, "alternative", [_text_part(rng, nwords), related])
    elif kind < 0.94 and depth < 2:
        msgs = [([], _message(rng, 0.2, depth + 1)) for _ in range(rng.randint(2, 4))]
        hdr, body = _multipart(rng, "digest", msgs)
    else:
        hdr, body = _text_part(rng, nwords)
        hdr = hdr + ["Content-Language: en, de", "Content-Location: http://example.com/x",
                     "Content-Description: =?utf-8?q?d=C3=A9scription?="]
    head = "\r\n".join(_headers(rng, hdr)).encode("utf-8") + b"\r\n\r\n"
    return head + body


def _mangle(rng: random.Random, raw: bytes) -> bytes:
    r = rng.random()
    if r < 0.35:
        return raw.replace(b"\r\n", b"\n")
    if r < 0.5:
        return raw[: rng.randint(0, len(raw))]
    if r < 0.6:
        pos = rng.randint(0, len(raw))
        return raw[:pos] + rng.randbytes(rng.randint(1, 200)) + raw[pos:]
    if r < 0.7:
        return raw.replace(b"boundary=", b"boundery=", 1)
    if r < 0.8:
        return raw.replace(b"\r\n\r\n", b"\r\n", 1)
    if r < 0.9:
        return raw.replace(b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: x-uue")
    return b"Subject: \xe9t\xe9 \xff\xfe 8bit\r\nFrom: \xc3\xa9l\xc3\xa8ve <e@example.com>\r\n" + raw


def generate(n: int = 240, seed: int = 5322, scale: float = 1.0) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        raw = _message(rng, scale)
        if i % 5 == 4:
            raw = _mangle(rng, raw)
        out.append(raw)
    out.append(b"")
    out.append(b"\r\n")
    out.append(b"no header at all, just text\r\n")
    out.append(b"Subject: only a header")
    out.append(bytes(range(256)) * 4)
    return out


def ugly_files() -> list[pathlib.Path]:
    return sorted(HERE.glob("*.eml"))


def corpus(n: int = 240, scale: float = 0.3) -> list[bytes]:
    """The test corpus: generated messages plus the hand-made ugly ones."""
    return generate(n, scale=scale) + [p.read_bytes() for p in ugly_files()]


if __name__ == "__main__":
    msgs = generate()
    print(len(msgs), "messages,", sum(map(len, msgs)), "bytes")
