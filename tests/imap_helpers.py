"""Shared pieces for IMAP service tests: a server with a user, real clients, and
the one raw-socket IMAP client (Raw, RawText, AsyncRaw) the tests speak lines with."""
import imaplib
import os
import re
import socket
import ssl

import pytest
import trio
import trio.testing

from mailaccess import accounts


def ca_file(ctx) -> str:
    return os.path.join(ctx.cfg.data_dir, "tls", "selfsigned-ca.pem")


def client_ssl(ctx) -> ssl.SSLContext:
    c = ssl.create_default_context(cafile=ca_file(ctx))
    return c


def imap_port(ctx) -> int:
    return ctx.bound["imap"][0][1]


def imaps_port(ctx) -> int:
    return ctx.bound["imaps"][0][1]


def connect(ctx, user="alice", password="pw") -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", imap_port(ctx), timeout=30)
    if user:
        c.login(user, password)
    return c


def msg(subject="hello", body="body text", mid=None, frm="Sender <s@example.org>", extra=""):
    mid = mid or f"<{subject.replace(' ', '.')}@test>"
    return (f"From: {frm}\r\nTo: alice@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: {mid}\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\n{extra}\r\n"
            f"{body}\r\n").encode()


async def run(fn, *args):
    """Run a blocking client function in a thread (the server stays on the loop).
    A client stuck past 60 s fails the test (TooSlowError) instead of hanging
    the run: the thread is abandoned, since a blocked read cannot be cancelled."""
    with trio.fail_after(60):
        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


LITERAL_AT_END = re.compile(rb"~?\{(\d+)\+?\}\r?\n?$")


class Raw:
    """A blocking raw IMAP connection: send lines verbatim, read every line the
    server sends (literals included) up to a tagged answer.

    TARGET is a server context or a port.  Options (one per behaviour the test
    files needed; the defaults are the common case):
      login         LOGIN alice pw first (USER/PASSWORD), answer unchecked
                    unless CHECK_OK.
      prefix        tags are PREFIX + a counter (``self.n``).
      own_tags      cmd(TEXT): TEXT already starts with its tag.
      check_ok      cmd asserts the tagged answer is OK (True: its status word;
                    a function: that function of the tagged line).
      whole         cmd's lines are whole responses (a line, its literals and the
                    rest of the line in one item) rather than a literal as an
                    item of its own.
      record        a list that gets every line read and every ``C: `` write.
      continuation  read_until also stops at a ``+ `` continuation request.
      eof_ok        read_until returns (recording ``EOF``) when the server
                    closes instead of raising EOFError.
      logout        close() sends LOGOUT first: "send" without reading the
                    answer, "wait" reading it (errors ignored).
    """

    def __init__(self, target, login=True, *, user="alice", password="pw", prefix=b"t",
                 timeout=10, own_tags=False, check_ok=False, whole=False, record=None,
                 continuation=False, eof_ok=False, logout=None):
        port = target if isinstance(target, int) else imap_port(target)
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.f = self.s.makefile("rwb")
        self.n = 0
        self.prefix, self.own_tags, self.check_ok, self.whole = prefix, own_tags, check_ok, whole
        self.record, self.continuation, self.eof_ok = record, continuation, eof_ok
        self.logout = logout
        self.greeting = self.f.readline()
        if login:
            self.cmd(b"%sLOGIN %s %s" % (b"a0 " if own_tags else b"", user.encode(),
                                         password.encode()))

    # -- bytes in and out ---------------------------------------------------
    def write(self, data: bytes) -> None:
        """Send DATA as it is."""
        if self.record is not None:
            self.record.append(b"C: " + data)
        self.f.write(data)
        self.f.flush()

    def line(self) -> bytes:
        """The next line, CRLF included (EOFError when the server has closed)."""
        got = self.f.readline()
        if not got:
            raise EOFError("server closed the connection")
        if self.record is not None:
            self.record.append(got)
        return got

    def read(self, n: int) -> bytes:
        """Exactly N bytes (a literal's body)."""
        got = self.f.read(n)
        if len(got) < n:
            raise EOFError("server closed the connection")
        if self.record is not None:
            self.record.append(got)
        return got

    def response(self) -> bytes:
        """One whole response: a line plus the literals it carries and the rest."""
        out = b""
        while True:
            got = self.line()
            out += got
            m = LITERAL_AT_END.search(got)
            if not m:
                return out
            out += self.read(int(m.group(1)))

    def responses_until(self, pred) -> list[bytes]:
        """Whole responses up to the first one PRED accepts (unsolicited news;
        the socket's timeout is the hang guard)."""
        out = []
        while True:
            out.append(self.response())
            if pred(out[-1]):
                return out

    # -- commands ------------------------------------------------------------
    def send(self, line: bytes | str, tag: bytes | None = None) -> bytes:
        """Send TAG LINE (a fresh tag unless one is named); the tag."""
        if isinstance(line, str):
            line = line.encode()
        self.n += 1
        tag = tag or self.prefix + b"%d" % self.n
        self.write(tag + b" " + line + b"\r\n")
        return tag

    def read_until(self, tag: bytes) -> list[bytes]:
        """Everything up to and including the line tagged TAG."""
        out = []
        while True:
            try:
                got = self.response() if self.whole else self.line()
            except EOFError:
                if not self.eof_ok:
                    raise
                if self.record is not None:
                    self.record.append(b"EOF\r\n")
                return out
            out.append(got)
            m = None if self.whole else LITERAL_AT_END.search(got)
            if m:
                out.append(self.read(int(m.group(1))))
                continue
            if got.startswith(tag + b" "):
                if self.check_ok:
                    ok = (self.check_ok(got) if callable(self.check_ok)
                          else got.split()[1] == b"OK")
                    assert ok, out
                return out
            if self.continuation and got.startswith(b"+ "):
                return out

    def cmd(self, line: bytes | str, literal: bytes | None = None,
            tag: bytes | None = None) -> list[bytes]:
        """Send a command (LITERAL, if given, goes last as a non-synchronising
        literal); every line up to the tagged answer."""
        if isinstance(line, str):
            line = line.encode()
        if literal is not None:
            line += b" {%d+}\r\n" % len(literal) + literal
        if self.own_tags:
            tag, line = line.split(b" ", 1)
        return self.read_until(self.send(line, tag))

    def command(self, text: bytes | str, literals=(), tag: bytes | None = None) -> list[bytes]:
        """Send TAG TEXT; each ``{}`` in TEXT becomes a synchronising literal
        from LITERALS (the server's ``+`` awaited).  Whole responses up to the
        tagged one (a refused literal ends it early)."""
        if isinstance(text, str):
            text = text.encode()
        self.n += 1
        tag = tag or self.prefix + b"%d" % self.n
        pieces = text.split(b"{}")
        assert len(pieces) == len(literals) + 1, "placeholder/literal count mismatch"
        out: list[bytes] = []
        self.write(tag + b" " + pieces[0])
        for lit, rest in zip(literals, pieces[1:]):
            self.write(b"{%d}\r\n" % len(lit))
            while True:
                resp = self.response()
                if resp.startswith(b"+"):
                    break
                out.append(resp)
                if resp.startswith(tag + b" "):
                    return out          # literal refused
            self.write(lit + rest)
        self.write(b"\r\n")
        while True:
            resp = self.response()
            out.append(resp)
            if resp.startswith(tag + b" "):
                return out

    def append(self, raw: bytes, flags: bytes = b"", mailbox: bytes = b"INBOX"):
        return self.cmd(b"APPEND " + mailbox + (b" (" + flags + b")" if flags else b""), raw)

    def close(self) -> None:
        if self.logout == "send":
            try:
                self.s.sendall(b"zz LOGOUT\r\n")
            except OSError:
                pass
        elif self.logout == "wait":
            try:
                self.cmd(b"LOGOUT")
            except (AssertionError, EOFError, OSError):
                pass
        self.s.close()


class RawText(Raw):
    """Raw whose answers are one bytes string (everything joined)."""

    def cmd(self, *a, **kw) -> bytes:
        return b"".join(super().cmd(*a, **kw))

    def until(self, tag: bytes) -> bytes:
        return b"".join(self.read_until(tag))


class AsyncRaw:
    """A raw IMAP client on a non-blocking socket, read from the Trio loop (so
    a test can see what the server sends unasked, and when).  HIDE_RECENT:
    leave \\Recent (``* n RECENT`` and the flag) out of what line() returns."""

    def __init__(self, port: int, hide_recent: bool = False):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.buf = b""
        self.n = 0
        self.hide_recent = hide_recent

    @classmethod
    async def login(cls, ctx, user="alice", password="pw", **kw) -> "AsyncRaw":
        """A connection to CTX's IMAP port, greeting read, logged in (OK checked)."""
        c = cls(imap_port(ctx), **kw)
        await c.line()
        await c.cmd(f"LOGIN {user} {password}")
        return c

    async def _fill(self) -> None:
        await trio.lowlevel.wait_readable(self.sock)
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed")
        self.buf += data

    async def line(self) -> bytes:
        """The next response (no CRLF), literals inlined."""
        while True:
            line = await self._line()
            if not self.hide_recent:
                return line
            if re.fullmatch(rb"\* \d+ RECENT", line):
                continue
            return re.sub(rb" ?\\Recent(?=[ )])", b"", line).replace(b"( ", b"(")

    async def _line(self) -> bytes:
        with trio.fail_after(30):    # a hang guard, not a timing assertion
            while b"\r\n" not in self.buf:
                await self._fill()
            line, _, self.buf = self.buf.partition(b"\r\n")
            m = re.search(rb"\{(\d+)\}$", line)
            if m:
                n = int(m.group(1))
                while len(self.buf) < n:
                    await self._fill()
                lit, self.buf = self.buf[:n], self.buf[n:]
                line += b"\r\n" + lit + await self._line()
            return line

    def send(self, data: bytes) -> None:
        self.sock.setblocking(True)
        self.sock.sendall(data)
        self.sock.setblocking(False)

    async def cmd(self, text: str) -> list[bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        self.send(tag + b" " + text.encode() + b"\r\n")
        lines = []
        while True:
            line = await self.line()
            lines.append(line)
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), lines
                return lines

    async def until(self, pred) -> list[bytes]:
        lines = []
        while True:
            line = await self.line()
            lines.append(line)
            if pred(line):
                return lines

    async def idle_output(self) -> bytes:
        """What the server sent without being asked, once it has done all it would."""
        await trio.testing.wait_all_tasks_blocked()
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            data = b""
        self.buf += data
        out, self.buf = self.buf, b""
        return out

    def close(self) -> None:
        self.sock.close()


def literal(data: bytes) -> str:
    """DATA as a non-synchronising literal, to end a command's text."""
    return "{%d+}\r\n" % len(data) + data.decode()
