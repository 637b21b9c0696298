"""The certificate checks of our outgoing TLS connections (server/tls.py
client_context: JMAP push over https, the SMTP relay's STARTTLS) are the same
on every Python.  ssl.create_default_context() turns on VERIFY_X509_STRICT
and VERIFY_X509_PARTIAL_CHAIN from 3.13 on: strict mode refused a private
CA's leaf without an Authority Key Identifier ("Missing Authority Key
Identifier", seen on 3.13.0, accepted on 3.11.7), and without partial chain
an intermediate in the trust store was no anchor (3.11/3.12).  We accept
both on every Python, as OpenSSL's default and Postfix/Dovecot do; a wrong
host name and an untrusted CA are still refused."""
from __future__ import annotations

import datetime
import functools
import os
import ssl

import pytest
import trio
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mailaccess.config import SmtpConfig
from mailaccess.server import http_out, outbound, tls

from smtp_sink import Sink


class PrivateCA:
    """A CA as small private PKIs make them (openssl x509 -req without an
    extension file, old scripts): its leaves carry no Authority Key
    Identifier, which VERIFY_X509_STRICT refuses and OpenSSL's default
    accepts."""

    def __init__(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        self._validity = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=30))
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                   f"private test CA {os.urandom(6).hex()}")])
        self.cert = (x509.CertificateBuilder()
                     .subject_name(self._name).issuer_name(self._name)
                     .public_key(self._key.public_key()).serial_number(1)
                     .not_valid_before(self._validity[0]).not_valid_after(self._validity[1])
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                         self._key.public_key()), critical=False)
                     .sign(self._key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM)

    def server_context(self, host: str) -> ssl.SSLContext:
        """A server context presenting a leaf for HOST with no Authority Key
        Identifier."""
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
                .issuer_name(self._name).public_key(key.public_key()).serial_number(2)
                .not_valid_before(self._validity[0]).not_valid_after(self._validity[1])
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self._key, hashes.SHA256()))
        assert not any(isinstance(e.value, x509.AuthorityKeyIdentifier) for e in leaf.extensions)
        blob = trustme.Blob(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + leaf.public_bytes(serialization.Encoding.PEM))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with blob.tempfile() as path:
            ctx.load_cert_chain(path)
        return ctx


def handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext, host: str) -> None:
    """One TLS handshake in memory; raises ssl.SSLError when the client
    refuses the server's certificate."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=host)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = set()
    for _ in range(20):
        for name, end, out, peer_in in (("c", client, c_out, s_in), ("s", server, s_out, c_in)):
            try:
                end.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
            data = out.read()
            if data:
                peer_in.write(data)
        if done == {"c", "s"}:
            return
    raise AssertionError("handshake did not finish")


def trusting(*pems: bytes) -> ssl.SSLContext:
    """client_context() with PEMS added to its trust store (as an operator
    adds a private CA to the system's)."""
    ctx = tls.client_context()
    for pem in pems:
        ctx.load_verify_locations(cadata=pem.decode())
    return ctx


def test_a_private_ca_leaf_without_authority_key_identifier_is_accepted():
    ca = PrivateCA()
    handshake(trusting(ca.pem), ca.server_context("push.example"), "push.example")


def test_an_intermediate_in_the_trust_store_is_an_anchor():
    """The operator trusts the issuing intermediate, not its root: accepted
    (partial chain), the server sending leaf + intermediate."""
    root = trustme.CA()
    inter = root.create_child_ca()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    inter.issue_cert("relay.example").configure_cert(server_ctx)
    handshake(trusting(inter.cert_pem.bytes()), server_ctx, "relay.example")


def test_a_certificate_for_another_host_is_refused():
    ca = PrivateCA()
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname"):
        handshake(trusting(ca.pem), ca.server_context("other.example"), "push.example")
    good = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    good.issue_cert("other.example").configure_cert(server_ctx)
    with pytest.raises(ssl.SSLCertVerificationError, match="[Hh]ostname"):
        handshake(trusting(good.cert_pem.bytes()), server_ctx, "push.example")


def test_an_untrusted_ca_is_refused():
    ca, stranger = PrivateCA(), PrivateCA()
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(trusting(stranger.pem), ca.server_context("push.example"), "push.example")
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(tls.client_context(), ca.server_context("push.example"), "push.example")


def test_the_context_still_requires_a_certificate_and_its_host_name():
    ctx = tls.client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert not ctx.verify_flags & ssl.VERIFY_X509_STRICT
    assert ctx.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN


@pytest.fixture
def system_trust(tmp_path, monkeypatch):
    """Make CA the system trust store of contexts made from now on (OpenSSL
    reads SSL_CERT_FILE / SSL_CERT_DIR when the default paths are loaded)."""
    def install(pem: bytes) -> None:
        path = tmp_path / "trust.pem"
        path.write_bytes(pem)
        (tmp_path / "nodir").mkdir(exist_ok=True)
        monkeypatch.setenv("SSL_CERT_FILE", str(path))
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "nodir"))
    return install


async def test_push_over_https_accepts_the_private_ca(nursery, system_trust):
    """http_out.post's own context (none given), the private CA in the
    system trust store: the POST arrives."""
    ca = PrivateCA()
    system_trust(ca.pem)
    server_ctx = ca.server_context("localhost")
    got = []

    async def conn(stream):
        s = trio.SSLStream(stream, server_ctx, server_side=True)
        try:
            await s.do_handshake()
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"{}"):
                chunk = await s.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            got.append(data)
            await s.send_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
        except trio.BrokenResourceError:
            return
        finally:
            await trio.aclose_forcefully(s)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, conn, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    resp = await http_out.post(f"https://localhost:{port}/p", b"{}",
                               allow_address=lambda ip: True)
    assert resp.status == 201 and got and got[0].startswith(b"POST /p ")
    other = PrivateCA()
    system_trust(other.pem)
    with pytest.raises(http_out.HttpError):
        await http_out.post(f"https://localhost:{port}/p", b"{}",
                            allow_address=lambda ip: True)
    assert len(got) == 1


def test_relay_starttls_accepts_the_private_ca(system_trust):
    """The relay's STARTTLS (outbound.relay) to a smarthost whose
    certificate is the private CA's: the message is delivered; with another
    CA trusted it stays queued (a certificate failure is retried)."""
    ca = PrivateCA()
    system_trust(ca.pem)
    with Sink(tls_context=ca.server_context("localhost"), require_starttls=True) as sink:
        cfg = SmtpConfig(relay_host="localhost", relay_port=sink.port, starttls=True,
                         timeout=30)
        out = outbound.relay(cfg, "mail.example", "a@example.org", ["b@example.net"],
                             b"Subject: t\r\n\r\nhello\r\n")
        assert out["b@example.net"][0] == "yes", out
        assert sink.received[0].rcpt_tos == ["b@example.net"]
        system_trust(PrivateCA().pem)
        out = outbound.relay(cfg, "mail.example", "a@example.org", ["c@example.net"],
                             b"Subject: t\r\n\r\nhello\r\n")
        assert out["c@example.net"][0] == "queued" and "certificate verify failed" in \
            out["c@example.net"][1], out
        assert len(sink.received) == 1
