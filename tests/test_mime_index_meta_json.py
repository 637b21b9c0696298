"""encode_index writes its meta field with an encoder made once
(mime/index.py ``_META_JSON``): the bytes are json.dumps's, compact."""
import json

from hypothesis import given, settings, strategies as hst

from mailaccess.mime import index as mindex

_HEADERS = hst.sampled_from([
    b"Subject: =?utf-8?q?caf=C3=A9?= \"quoted\" \\ back\r\n",
    b"From: \"A, B\" <a@example.org>, c@example.org\r\n",
    b"To: undisclosed-recipients:;\r\n",
    b"Date: Tue, 1 Jul 2025 10:00:00 +0200\r\n",
    b"Message-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\nReferences: <q@x> <p@x>\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    "Subject: \u00e9t\u00e9 \U0001f600\r\n".encode(),
])


@settings(max_examples=60, deadline=None)
@given(hst.lists(_HEADERS, max_size=6), hst.binary(max_size=300))
def test_the_meta_field_is_what_json_dumps_writes(headers, body):
    raw = b"".join(headers) + b"\r\n" + body
    mi = mindex.index_message(raw)
    meta = {name: getattr(mi, name) for name in mindex._META}
    want = json.dumps(meta, separators=(",", ":")).encode("ascii")
    assert mindex.index_field(mindex.encode_index(mi), "meta") == want
