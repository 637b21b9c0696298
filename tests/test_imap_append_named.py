"""APPEND finds its mailbox in the write transaction (perf6-append): a
mailbox deleted after "+" was sent, while the client uploads the literal,
gets NO [TRYCREATE] and nothing is stored; one renamed meanwhile is not
found under its old name; one created meanwhile is.  (Before, do_append
opened a read transaction of its own on the loop to look the name up.)"""
from imap_helpers import RawText, connect, msg, run


def tagged(out: bytes, tag: bytes) -> bytes:
    return next(ln for ln in out.split(b"\r\n") if ln.startswith(tag + b" "))


async def test_mailbox_gone_during_the_upload(imap_server):
    def go():
        other = connect(imap_server)
        assert other.create("Box")[0] == "OK"
        assert other.create("Old")[0] == "OK"
        body = msg("x", body="y" * 300)
        r = RawText(imap_server)
        # deleted between "+" and the literal's end
        r.s.sendall(b"b APPEND Box {%d}\r\n" % len(body))
        assert r.line().startswith(b"+")
        assert other.delete("Box")[0] == "OK"
        r.s.sendall(body + b"\r\n")
        assert tagged(r.until(b"b"), b"b").startswith(b"b NO [TRYCREATE]")
        # renamed meanwhile: not there under the old name
        r.s.sendall(b"c APPEND Old {%d}\r\n" % len(body))
        assert r.line().startswith(b"+")
        assert other.rename("Old", "New")[0] == "OK"
        r.s.sendall(body + b"\r\n")
        assert tagged(r.until(b"c"), b"c").startswith(b"c NO [TRYCREATE]")
        assert other.select("New")[1] == [b"0"]
        # and a mailbox that is there takes it
        r.s.sendall(b"d APPEND New {%d}\r\n" % len(body))
        assert r.line().startswith(b"+")
        r.s.sendall(body + b"\r\n")
        assert tagged(r.until(b"d"), b"d").startswith(b"d OK [APPENDUID")
        assert other.select("New")[1] == [b"1"]
        r.close()
        other.logout()
    await run(go)
