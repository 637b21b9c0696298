"""`mailaccess dns DOMAIN`: the DNS records an operator publishes for a mail domain.

``records(cfg, domain)`` returns zone-file lines (records and ``;`` comments) for
the listeners in the configuration:

- RFC 6186 SRV records that let mail clients find the IMAP service from the
  user's address: ``_imaps._tcp`` (implicit TLS, preferred per RFC 8314 §5.1)
  and ``_imap._tcp`` (STARTTLS), pointing at ``cfg.hostname`` with the
  configured ports.  A service that is not offered gets the RFC 6186 §4 /
  RFC 2782 "decidedly not available" record (target ``.``), so clients stop
  looking instead of guessing: POP3 and POP3S always, IMAP/IMAPS when their
  listener is disabled.  Submission is not a mailaccess service (the MTA offers
  it, if anyone does), so it appears only as commented-out templates.
- ``_jmap._tcp`` (RFC 8620 §2.2) for the HTTP service, which serves
  ``/.well-known/jmap``; once autoconfig/autodiscover are served (ActiveSync),
  ``autoconfig.DOMAIN`` and ``autodiscover.DOMAIN`` CNAMEs to the host and an
  ``_autodiscover._tcp`` SRV (Outlook/ActiveSync over HTTPS); until then
  ``_autodiscover._tcp`` is "not offered".
- A note on the TLS certificate (RFC 7817): it must cover the SRV target host
  name; the names it covers are listed, with a warning when ``cfg.hostname``
  is not among them.

Problems the operator should fix are ``; WARNING:`` comments, so the output stays
a valid zone-file fragment.  ``main_dns(cfg, domain)`` prints it.
"""
from __future__ import annotations

import ipaddress
import os
import re
import sys

from .config import Config, Listener

__all__ = ["records", "main_dns", "normalize_domain", "certificate_names"]

TTL = 3600
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def normalize_domain(name: str) -> str:
    """NAME lower-cased, without a trailing dot, IDNA (A-label) encoded;
    ValueError if it is not a usable DNS name."""
    name = (name or "").strip().rstrip(".").lower()
    if not name:
        raise ValueError("empty domain name")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{name!r} is not a valid internationalized domain name: "
                             f"{exc}") from None
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{name!r} is not a valid domain name")
    return name


def _fqdn(name: str) -> str:
    return name + "."


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
        return True
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _line(owner: str, rtype: str, data: str, comment: str = "") -> str:
    rr = f"{owner:<34} {TTL} IN {rtype:<5} {data}"
    return f"{rr}  ; {comment}" if comment else rr


def _srv(service: str, domain: str, priority: int, port: int, target: str,
         comment: str = "") -> str:
    return _line(f"{service}._tcp.{domain}.", "SRV", f"{priority} 1 {port} {target}.", comment)


def _not_offered(service: str, domain: str, comment: str = "") -> str:
    # RFC 6186 §4 / RFC 2782: a single record with target "." = "decidedly not available"
    return _line(f"{service}._tcp.{domain}.", "SRV", "0 0 0 .", comment)


def _name_matches(pattern: str, host: str) -> bool:
    """RFC 6125 §6.4.3 DNS-ID matching, wildcard only as the whole left-most label."""
    pattern, host = pattern.lower().rstrip("."), host.lower().rstrip(".")
    if pattern == host:
        return True
    if pattern.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == pattern[2:] and "." in rest
    return False


def certificate_names(cfg: Config) -> tuple[list[str], str]:
    """-> (DNS names the server's certificate covers, where they came from).

    With ``tls.cert`` set and readable the names are the certificate's
    subjectAltName DNS entries; otherwise ``tls.hostnames`` (what the
    self-signed certificate is made for)."""
    if cfg.tls.cert and os.path.exists(cfg.tls.cert):
        try:
            from cryptography import x509

            with open(cfg.tls.cert, "rb") as fh:
                cert = x509.load_pem_x509_certificate(fh.read())
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                names = san.value.get_values_for_type(x509.DNSName)
            except x509.ExtensionNotFound:
                names = []
            return list(names), f"subjectAltName of {cfg.tls.cert}"
        except Exception:   # unreadable, not PEM, cryptography missing: fall back
            pass
    return list(cfg.tls.hostnames), "tls.hostnames"


def _listener_notes(what: str, lst: Listener) -> list[str]:
    notes = []
    if _is_loopback(lst.host):
        notes.append(f"; WARNING: the {what} listener binds {lst.host} (loopback): clients "
                     "elsewhere cannot reach it; set it to a public address or 0.0.0.0")
    if lst.port == 0:
        notes.append(f"; WARNING: the {what} listener has port 0 (chosen at start-up); "
                     "configure a fixed port before publishing it")
    return notes


def http_services_available() -> bool:
    """True when this build serves JMAP over HTTP (server/http.py and its JMAP
    routes exist); until then no record may point clients at it."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("mailaccess.server.http", "mailaccess.server.jmap"))


def autodiscover_available() -> bool:
    """True once autoconfig/autodiscover (ActiveSync) are served."""
    import importlib.util

    return importlib.util.find_spec("mailaccess.server.autodiscover") is not None


def records(cfg: Config, domain: str, *, http_served: bool | None = None,
            autodiscover_served: bool | None = None) -> list[str]:
    """Zone-file lines (records and ``;`` comments) for DOMAIN served by CFG.
    HTTP_SERVED: whether JMAP is served; AUTODISCOVER_SERVED: whether
    autoconfig/autodiscover are (default: as HTTP_SERVED when that is given,
    else each detected)."""
    if autodiscover_served is None:
        autodiscover_served = (http_served if http_served is not None
                               else autodiscover_available())
    if http_served is None:
        http_served = http_services_available()
    autodiscover_served = autodiscover_served and http_served
    domain = normalize_domain(domain)
    host_raw = (cfg.hostname or "").strip().rstrip(".")
    out: list[str] = [
        f"; DNS records for mail domain {domain}, served by mailaccess on {host_raw}",
        "; (zone-file syntax, fully-qualified names: paste into the zone of "
        f"{domain})",
    ]
    try:
        host = normalize_domain(host_raw)
    except ValueError:
        host = host_raw.lower()
    warnings = []
    if not host or _is_ip(host):
        warnings.append(f"; WARNING: hostname {host_raw!r} is not a DNS name; SRV and CNAME "
                        "targets must be host names with A/AAAA records (RFC 2782)")
    elif _is_loopback(host) or "." not in host:
        warnings.append(f"; WARNING: hostname {host_raw!r} is not a public DNS name; set "
                        "`hostname` in the config to the server's name (e.g. mail."
                        f"{domain})")
    out += warnings
    out.append(f"; {host}. itself needs A and/or AAAA records (not a CNAME: an SRV "
               "target must not be an alias, RFC 2782).")

    # --- RFC 6186 mail access -----------------------------------------------------
    out += ["", "; Mail access (RFC 6186). Clients prefer the lowest priority;",
            "; implicit TLS (imaps) is preferred over STARTTLS (RFC 8314 §5.1)."]
    imaps, imap = cfg.imap.listen_tls, cfg.imap.listen
    if imaps.enabled:
        out += _listener_notes("IMAPS", imaps)
        out.append(_srv("_imaps", domain, 0, imaps.port, host, "IMAP, implicit TLS"))
    else:
        out.append(_not_offered("_imaps", domain, "IMAPS not offered (listener disabled)"))
    if imap.enabled:
        out += _listener_notes("IMAP", imap)
        out.append(_srv("_imap", domain, 10, imap.port, host, "IMAP, STARTTLS"))
    else:
        out.append(_not_offered("_imap", domain, "IMAP not offered (listener disabled)"))
    out.append(_not_offered("_pop3", domain, "POP3 not offered (RFC 6186 §4)"))
    out.append(_not_offered("_pop3s", domain, "POP3S not offered"))
    out += [
        "; Submission is not a mailaccess service. If your MTA offers it, publish",
        "; (RFC 6186 §3.1, RFC 8314 §5.1), with its host and ports:",
        f";   _submissions._tcp.{domain}. {TTL} IN SRV 0 1 465 <mta-host>.",
        f";   _submission._tcp.{domain}.  {TTL} IN SRV 10 1 587 <mta-host>.",
        "; and if nobody offers it:",
        f";   _submissions._tcp.{domain}. {TTL} IN SRV 0 0 0 .",
        f";   _submission._tcp.{domain}.  {TTL} IN SRV 0 0 0 .",
    ]

    # --- HTTP: JMAP, autoconfig, autodiscover --------------------------------------
    http = cfg.http.listen
    out += ["", "; JMAP (RFC 8620 §2.2) and client autoconfiguration over HTTPS"]
    if http.enabled and not http_served:
        out.append("; this version of mailaccess does not serve JMAP or autodiscover yet:")
        out.append(_not_offered("_jmap", domain, "JMAP not offered yet"))
        out.append(_not_offered("_autodiscover", domain, "Autodiscover not offered yet"))
    elif http.enabled:
        out += _listener_notes("HTTP", http)
        out.append(_srv("_jmap", domain, 0, http.port, host, "JMAP session resource"))
        if not autodiscover_served:
            out.append("; autoconfig/autodiscover (ActiveSync) are not served yet:")
            out.append(_not_offered("_autodiscover", domain, "Autodiscover not offered yet"))
        else:
            for label, what in (("autoconfig", "Thunderbird & co.: /mail/config-v1.1.xml"),
                                ("autodiscover",
                                 "Outlook/ActiveSync: /autodiscover/autodiscover.xml")):
                if host == f"{label}.{domain}":
                    out.append(f"; {host} is the server itself: it needs A/AAAA records, "
                               "no CNAME")
                else:
                    out.append(_line(f"{label}.{domain}.", "CNAME", _fqdn(host), what))
            out.append(_srv("_autodiscover", domain, 0, http.port, host,
                            "Autodiscover over HTTPS (Outlook, ActiveSync)"))
            if http.port != 443:
                out.append(f"; WARNING: HTTP listens on port {http.port}; autoconfig."
                           f"{domain} and autodiscover.{domain} are fetched on the standard "
                           "HTTPS port 443, which the CNAMEs cannot change (only the SRV "
                           "records carry the port): serve 443 or forward it")
    else:
        out.append(_not_offered("_jmap", domain, "JMAP not offered (HTTP disabled)"))
        out.append(_not_offered("_autodiscover", domain,
                                "Autodiscover not offered (HTTP disabled)"))

    # --- TLS certificate (RFC 7817) -------------------------------------------------
    names, source = certificate_names(cfg)
    out += ["", "; TLS certificate (RFC 7817): clients that found the server through the",
            f"; SRV records above check its certificate against the SRV target {host},",
            f"; so the certificate must cover {host}; clients that do not trust the SRV",
            f"; lookup (no DNSSEC) check the mail domain instead: cover {domain} too (or",
            f"; the SRV-IDs _imaps.{domain} and _imap.{domain})."]
    if http.enabled and autodiscover_served:
        out += [f"; autoconfig.{domain} and autodiscover.{domain} are fetched over HTTPS:",
                "; cover them as well."]
    out.append(f"; Names covered ({source}): " + (", ".join(names) if names else "(none)"))
    if cfg.tls.cert and source == "tls.hostnames":
        out.append(f"; WARNING: tls.cert {cfg.tls.cert} cannot be read as a PEM "
                   "certificate; the names above are only the tls.hostnames setting")
    if host and not any(_name_matches(n, host) for n in names):
        out.append(f"; WARNING: {host} (the `hostname` setting, the SRV target) is not "
                   "among the certificate's names: TLS clients will reject the server")
    extras = [domain] + ([f"autoconfig.{domain}", f"autodiscover.{domain}"]
                         if http.enabled and autodiscover_served else [])
    for extra in extras:
        if extra != host and not any(_name_matches(n, extra) for n in names):
            out.append(f"; note: {extra} is not covered by the certificate")
    if not cfg.tls.cert:
        out.append("; WARNING: no tls.cert configured: the server uses its self-signed "
                   "certificate, which mail clients do not trust; configure a CA-issued "
                   "one (e.g. ACME/Let's Encrypt)")
    return out


def main_dns(cfg: Config, domain: str) -> int:
    """Print the records for DOMAIN; 0 on success, 2 for a bad domain name."""
    try:
        lines = records(cfg, domain)
    except ValueError as exc:
        print(f"mailaccess dns: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
