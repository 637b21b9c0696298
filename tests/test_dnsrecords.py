"""`mailaccess dns DOMAIN`: RFC 6186 SRV, autoconfig/autodiscover and the
RFC 7817 certificate note, for the embedded default and a production config."""
import dataclasses
import re
import shutil
import subprocess

import pytest

from mailaccess import config, dnsrecords
from mailaccess.config import Listener

RR = re.compile(r"^(?P<owner>\S+)\s+(?P<ttl>\d+)\s+IN\s+(?P<type>SRV|CNAME)\s+"
                r"(?P<data>[^;]*?)\s*(?:;.*)?$")


def rrs(lines):
    """The records (not comments) as (owner, type, data) tuples, in order."""
    out = []
    for line in lines:
        if line.startswith(";") or not line.strip():
            continue
        m = RR.match(line)
        assert m, f"not a zone-file record: {line!r}"
        out.append((m["owner"], m["type"], " ".join(m["data"].split())))
    return out


def warnings(lines):
    return [line for line in lines if line.startswith("; WARNING:")]


def production(**tls):
    cfg = config.Config(hostname="mail.example.org", demo_account=False)
    return dataclasses.replace(
        cfg,
        imap=dataclasses.replace(cfg.imap, listen=Listener("0.0.0.0", 143),
                                 listen_tls=Listener("0.0.0.0", 993)),
        http=dataclasses.replace(cfg.http, listen=Listener("::", 443)),
        tls=dataclasses.replace(cfg.tls, **(tls or {
            "hostnames": ("mail.example.org", "example.org", "autoconfig.example.org",
                          "autodiscover.example.org")})),
    )


# ----------------------------------------------------------------- the default config


def test_default_config_records():
    lines = dnsrecords.records(config.Config(), "example.org", http_served=True)
    assert rrs(lines) == [
        ("_imaps._tcp.example.org.", "SRV", "0 1 1993 localhost."),
        ("_imap._tcp.example.org.", "SRV", "10 1 1143 localhost."),
        ("_pop3._tcp.example.org.", "SRV", "0 0 0 ."),
        ("_pop3s._tcp.example.org.", "SRV", "0 0 0 ."),
        ("_jmap._tcp.example.org.", "SRV", "0 1 8080 localhost."),
        ("autoconfig.example.org.", "CNAME", "localhost."),
        ("autodiscover.example.org.", "CNAME", "localhost."),
        ("_autodiscover._tcp.example.org.", "SRV", "0 1 8080 localhost."),
    ]
    w = "\n".join(warnings(lines))
    # the embedded default is not publishable, and the output says why
    assert "hostname 'localhost' is not a public DNS name" in w
    assert w.count("binds 127.0.0.1 (loopback)") == 3          # IMAP, IMAPS, HTTP
    assert "HTTP listens on port 8080" in w
    assert "no tls.cert configured" in w
    # the certificate note lists the self-signed names; localhost is covered
    assert "; Names covered (tls.hostnames): localhost" in lines
    assert "localhost (the `hostname` setting, the SRV target) is not" not in w


def test_submission_only_as_commented_templates():
    """mailaccess has no submission service: no live _submission records either way
    (the operator's MTA may offer it), only commented templates."""
    lines = dnsrecords.records(config.Config(), "example.org", http_served=True)
    assert not any("_submission" in owner for owner, _, _ in rrs(lines))
    text = "\n".join(lines)
    assert ";   _submission._tcp.example.org.  3600 IN SRV 10 1 587 <mta-host>." in text
    assert ";   _submissions._tcp.example.org. 3600 IN SRV 0 0 0 ." in text


# ----------------------------------------------------------------- production


def test_production_config_records():
    lines = dnsrecords.records(production(), "example.org", http_served=True)
    assert rrs(lines) == [
        ("_imaps._tcp.example.org.", "SRV", "0 1 993 mail.example.org."),
        ("_imap._tcp.example.org.", "SRV", "10 1 143 mail.example.org."),
        ("_pop3._tcp.example.org.", "SRV", "0 0 0 ."),
        ("_pop3s._tcp.example.org.", "SRV", "0 0 0 ."),
        ("_jmap._tcp.example.org.", "SRV", "0 1 443 mail.example.org."),
        ("autoconfig.example.org.", "CNAME", "mail.example.org."),
        ("autodiscover.example.org.", "CNAME", "mail.example.org."),
        ("_autodiscover._tcp.example.org.", "SRV", "0 1 443 mail.example.org."),
    ]
    # tls.hostnames covers everything; only the self-signed warning is left
    assert [w for w in warnings(lines)] == [
        w for w in warnings(lines) if "no tls.cert configured" in w]
    assert len(warnings(lines)) == 1
    assert not any(line.startswith("; note:") for line in lines)
    assert ("; Names covered (tls.hostnames): mail.example.org, example.org, "
            "autoconfig.example.org, autodiscover.example.org") in lines


def test_production_with_real_certificate(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    leaf = ca.issue_cert("mail.example.org", "example.org")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    # tls.hostnames is not what counts once a certificate is configured
    cfg = production(cert=str(cert), key=str(key), hostnames=("bogus.invalid",))
    lines = dnsrecords.records(cfg, "example.org", http_served=True)
    assert f"; Names covered (subjectAltName of {cert}): mail.example.org, example.org" \
        in lines
    assert warnings(lines) == []
    assert "; note: autoconfig.example.org is not covered by the certificate" in lines
    assert "; note: autodiscover.example.org is not covered by the certificate" in lines
    assert "; note: example.org is not covered by the certificate" not in lines


def test_wildcard_certificate_covers_host(tmp_path):
    trustme = pytest.importorskip("trustme")
    leaf = trustme.CA().issue_cert("*.example.org")
    cert = tmp_path / "cert.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    lines = dnsrecords.records(production(cert=str(cert), key=str(cert)), "example.org", http_served=True)
    assert warnings(lines) == []
    # a wildcard covers one label: not the bare domain
    assert [line for line in lines if line.startswith("; note:")] == [
        "; note: example.org is not covered by the certificate"]


def test_warns_when_hostname_not_in_certificate_names():
    cfg = production(hostnames=("imap.example.org", "example.org"))
    lines = dnsrecords.records(cfg, "example.org", http_served=True)
    assert ("; WARNING: mail.example.org (the `hostname` setting, the SRV target) is not "
            "among the certificate's names: TLS clients will reject the server") in lines
    # the wildcard must be the whole left-most label, and one level only
    cfg = production(hostnames=("*.mail.example.org", "m*.example.org", "*.org"))
    assert any("mail.example.org (the `hostname` setting" in w
               for w in warnings(dnsrecords.records(cfg, "example.org", http_served=True)))


def test_unreadable_certificate_falls_back_with_warning(tmp_path):
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("nothing here\n")
    cfg = production(cert=str(bad), key=str(bad), hostnames=("mail.example.org",))
    lines = dnsrecords.records(cfg, "example.org", http_served=True)
    assert "; Names covered (tls.hostnames): mail.example.org" in lines
    assert any(f"tls.cert {bad} cannot be read" in w for w in warnings(lines))


def test_disabled_listeners_are_published_as_not_available():
    cfg = production()
    cfg = dataclasses.replace(
        cfg, imap=dataclasses.replace(cfg.imap, listen=Listener("0.0.0.0", 143, False)),
        http=dataclasses.replace(cfg.http, listen=Listener("::", 443, False)))
    recs = rrs(dnsrecords.records(cfg, "example.org", http_served=True))
    assert ("_imap._tcp.example.org.", "SRV", "0 0 0 .") in recs
    assert ("_imaps._tcp.example.org.", "SRV", "0 1 993 mail.example.org.") in recs
    assert ("_jmap._tcp.example.org.", "SRV", "0 0 0 .") in recs
    assert ("_autodiscover._tcp.example.org.", "SRV", "0 0 0 .") in recs
    assert not [r for r in recs if r[1] == "CNAME"]


def test_hostname_is_the_autoconfig_name():
    cfg = dataclasses.replace(production(), hostname="autoconfig.example.org")
    recs = rrs(dnsrecords.records(cfg, "example.org", http_served=True))
    assert ("autoconfig.example.org.", "CNAME", "autoconfig.example.org.") not in recs
    assert ("autodiscover.example.org.", "CNAME", "autoconfig.example.org.") in recs


def test_nonstandard_ports_and_ip_hostname():
    cfg = production()
    cfg = dataclasses.replace(
        cfg, hostname="192.0.2.10",
        imap=dataclasses.replace(cfg.imap, listen_tls=Listener("192.0.2.10", 10993)),
        http=dataclasses.replace(cfg.http, listen=Listener("192.0.2.10", 8443)))
    lines = dnsrecords.records(cfg, "example.org", http_served=True)
    assert ("_imaps._tcp.example.org.", "SRV", "0 1 10993 192.0.2.10.") in rrs(lines)
    w = "\n".join(warnings(lines))
    assert "'192.0.2.10' is not a DNS name" in w
    assert "HTTP listens on port 8443" in w
    assert "loopback" not in w


# ----------------------------------------------------------------- names and the CLI


@pytest.mark.parametrize("given, expected", [
    ("Example.ORG.", "example.org"),
    ("  mail.example.org ", "mail.example.org"),
    ("bücher.example", "xn--bcher-kva.example"),
])
def test_domain_normalisation(given, expected):
    assert dnsrecords.normalize_domain(given) == expected
    recs = rrs(dnsrecords.records(production(), given, http_served=True))
    assert recs[0][0] == f"_imaps._tcp.{expected}."


@pytest.mark.parametrize("bad", ["", ".", "exa mple.org", "-bad.org", "a..b", "x" * 64 + ".org",
                                 "under;score.org"])
def test_bad_domain(bad, capsys):
    with pytest.raises(ValueError):
        dnsrecords.records(production(), bad)
    assert dnsrecords.main_dns(production(), bad) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("mailaccess dns: ")


def test_main_dns_prints_the_records(capsys):
    assert dnsrecords.main_dns(production(), "example.org") == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out == "\n".join(dnsrecords.records(production(), "example.org")) + "\n"


def test_every_line_is_a_record_or_a_comment():
    for cfg in (config.Config(), production()):
        for line in dnsrecords.records(cfg, "example.org", http_served=True):
            assert line == "" or line.startswith(";") or RR.match(line), line


@pytest.mark.skipif(shutil.which("named-checkzone") is None,
                    reason="named-checkzone (Debian bind9-utils) is not installed")
@pytest.mark.parametrize("which", ["default", "production"])
def test_zone_file_syntax_with_named_checkzone(tmp_path, which):
    """The output pasted into a zone loads in BIND (SRV/CNAME syntax, no clashes)."""
    cfg = config.Config() if which == "default" else production()
    zone = tmp_path / "example.org.zone"
    zone.write_text(
        "$ORIGIN example.org.\n$TTL 3600\n"
        "@ IN SOA ns1.example.org. hostmaster.example.org. 1 7200 900 1209600 300\n"
        "@ IN NS ns1.example.org.\nns1 IN A 192.0.2.1\nmail IN A 192.0.2.10\n"
        + "\n".join(dnsrecords.records(cfg, "example.org", http_served=True)) + "\n")
    p = subprocess.run(["named-checkzone", "-k", "fail", "-n", "fail", "example.org",
                        str(zone)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "loaded serial 1" in p.stdout


def test_this_build_publishes_jmap_and_autodiscover():
    """JMAP (server/http.py + server/jmap.py) and Autodiscover
    (server/autodiscover.py) are served: their SRVs point at the HTTP
    listener."""
    assert dnsrecords.http_services_available() and dnsrecords.autodiscover_available()
    recs = rrs(dnsrecords.records(production(), "example.org"))
    assert ("_jmap._tcp.example.org.", "SRV", "0 1 443 mail.example.org.") in recs
    assert ("_autodiscover._tcp.example.org.", "SRV", "0 1 443 mail.example.org.") in recs
    assert ("autodiscover.example.org.", "CNAME", "mail.example.org.") in recs
