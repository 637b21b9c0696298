"""TLS contexts for the listeners and for our outgoing connections, and the
embedded default's self-signed certificate (made once, kept in the data
directory)."""
from __future__ import annotations

import logging
import os
import ssl

from ..config import Config

log = logging.getLogger("mailaccess.tls")


def ensure_certificate(cfg: Config) -> tuple[str, str]:
    """-> (cert path, key path); generates a self-signed pair on first start
    when the config names none."""
    if cfg.tls.cert:
        if not (os.path.exists(cfg.tls.cert) and os.path.exists(cfg.tls.key or cfg.tls.cert)):
            raise FileNotFoundError(
                f"tls.cert {cfg.tls.cert!r} or tls.key {cfg.tls.key!r} does not exist")
        return cfg.tls.cert, cfg.tls.key or cfg.tls.cert
    d = os.path.join(cfg.data_dir, "tls")
    cert = os.path.join(d, "selfsigned-cert.pem")
    key = os.path.join(d, "selfsigned-key.pem")
    ca = os.path.join(d, "selfsigned-ca.pem")
    if not os.path.exists(cert):
        import trustme

        os.makedirs(d, exist_ok=True)
        authority = trustme.CA(organization_name="mailaccess self-signed")
        leaf = authority.issue_cert(*cfg.tls.hostnames, "127.0.0.1", "::1")
        leaf.private_key_pem.write_to_path(key)
        os.chmod(key, 0o600)
        leaf.cert_chain_pems[0].write_to_path(cert)
        authority.cert_pem.write_to_path(ca)
        log.info("generated a self-signed certificate for %s in %s (trust %s in clients)",
                 ", ".join(cfg.tls.hostnames), d, ca)
    return cert, key


def server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


# The certificate checks of every outgoing TLS connection (JMAP push in
# server/http_out.py, the SMTP relay's STARTTLS in server/outbound.py), set
# here rather than left to ssl.create_default_context(), whose flags depend
# on the Python: 3.13 added VERIFY_X509_STRICT and VERIFY_X509_PARTIAL_CHAIN,
# and strict mode refuses certificates OpenSSL's default accepts (a leaf
# without an Authority Key Identifier, a CA without a Subject Key Identifier
# or whose Basic Constraints are not critical: common in private CAs).  What
# Postfix and Dovecot accept is OpenSSL's default checking, so: no strict
# mode, and a certificate in the trust store is a trust anchor even when it
# is an intermediate (partial chain, as 3.13 does).  Host name checking and
# CERT_REQUIRED are create_default_context's, unchanged.
CLIENT_VERIFY_FLAGS = ssl.VERIFY_X509_TRUSTED_FIRST | ssl.VERIFY_X509_PARTIAL_CHAIN


def client_context() -> ssl.SSLContext:
    """The context of an outgoing TLS connection: the system's trust store,
    host name checked, the same verification flags on every Python
    (docs/operations.md "TLS of outgoing connections")."""
    ctx = ssl.create_default_context()
    ctx.verify_flags = CLIENT_VERIFY_FLAGS
    return ctx
