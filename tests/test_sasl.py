"""SASL: SCRAM-SHA-256 against scramp (a third-party SCRAM client) both
sans-IO and over IMAP AUTHENTICATE; PLAIN/LOGIN mechanics."""
import base64
import socket

import pytest
import scramp

from imap_helpers import imap_port, run
from mailaccess import sasl


def scram_exchange(mech, user, password):
    c = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    first = c.get_client_first().encode()
    ch = mech.step(first)
    c.set_server_first(ch.data.decode())
    done = mech.step(c.get_client_final().encode())
    c.set_server_final(done.final.decode())   # scramp verifies the server's proof
    return done


def test_scram_against_scramp():
    creds = {"alice": sasl.scram_credentials("s3cret")}
    done = scram_exchange(sasl.ScramSha256(creds.get), "alice", "s3cret")
    assert done.user == "alice" and done.password is None


def test_scram_wrong_password_and_unknown_user():
    creds = {"alice": sasl.scram_credentials("s3cret")}
    with pytest.raises(sasl.SaslError):
        scram_exchange(sasl.ScramSha256(creds.get), "alice", "wrong")
    with pytest.raises(sasl.SaslError):
        scram_exchange(sasl.ScramSha256(creds.get), "mallory", "x")


def test_scram_rejects_channel_binding_and_garbage():
    m = sasl.ScramSha256(lambda u: None)
    with pytest.raises(sasl.SaslError):
        m.step(b"p=tls-unique,,n=a,r=abc")
    with pytest.raises(sasl.SaslError):
        sasl.ScramSha256(lambda u: None).step(b"\xff\xfe")
    with pytest.raises(sasl.SaslError):
        sasl.ScramSha256(lambda u: None).step(b"n,,garbage")


def test_plain_and_login():
    assert sasl.Plain().step(b"\0bob\0pw") == sasl.Done("bob", "", password="pw")
    with pytest.raises(sasl.SaslError):
        sasl.Plain().step(b"nonul")
    m = sasl.Login()
    assert m.step(b"bob") == sasl.Challenge(b"Password:")
    assert m.step(b"pw").password == "pw"


async def test_imap_authenticate_scram(imap_server):
    def go(password):
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=10)
        f = s.makefile("rwb")
        assert b"AUTH=SCRAM-SHA-256" in f.readline()
        c = scramp.ScramClient(["SCRAM-SHA-256"], "alice", password)
        f.write(b"a AUTHENTICATE SCRAM-SHA-256 " +
                base64.b64encode(c.get_client_first().encode()) + b"\r\n")
        f.flush()
        line = f.readline()
        assert line.startswith(b"+ ")
        c.set_server_first(base64.b64decode(line[2:]).decode())
        f.write(base64.b64encode(c.get_client_final().encode()) + b"\r\n")
        f.flush()
        line = f.readline()
        if not line.startswith(b"+ "):
            return line
        c.set_server_final(base64.b64decode(line[2:]).decode())
        f.write(b"\r\n")
        f.flush()
        out = f.readline()
        s.close()
        return out

    assert (await run(go, "pw")).startswith(b"a OK")
    assert (await run(go, "nope")).startswith(b"a NO [AUTHENTICATIONFAILED]")
