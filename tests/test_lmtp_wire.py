"""LMTP wire layer: bytes in, events out (no sockets, no store)."""
from hypothesis import given, strategies as st

from mailaccess.proto.lmtp import wire


def events(conn, data=b""):
    if data:
        conn.receive_data(data)
    out = []
    while True:
        ev = conn.next_event()
        if ev is wire.NEED_DATA:
            return out
        out.append(ev)
        if isinstance(ev, wire.DataCommand):
            conn.start_data()
        if isinstance(ev, wire.RcptTo):
            conn.accept_recipient()
        if isinstance(ev, wire.Closed):
            return out


SESSION = (b"LHLO mx.example\r\nMAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<u@localhost>\r\n"
           b"DATA\r\n")


def test_full_transaction_with_dot_unstuffing():
    c = wire.LmtpConnection()
    evs = events(c, SESSION + b"Subject: x\r\n\r\n..leading dot\r\n.\r\n")
    assert evs[0] == wire.Lhlo("mx.example")
    assert evs[1] == wire.MailFrom("a@b", {"SIZE": "10"})
    assert evs[2] == wire.RcptTo("u@localhost", {})
    assert isinstance(evs[3], wire.DataCommand)
    assert evs[4] == wire.MessageData(b"Subject: x\r\n\r\n.leading dot\r\n", False)


def test_sequence_errors():
    c = wire.LmtpConnection()
    [e] = events(c, b"MAIL FROM:<a@b>\r\n")
    assert isinstance(e, wire.ProtocolError) and e.reply.startswith(b"503")
    [e] = events(c, b"EHLO x\r\n")
    assert e.reply.startswith(b"500")
    events(c, b"LHLO x\r\n")
    [e] = events(c, b"RCPT TO:<u@x>\r\n")
    assert e.reply.startswith(b"503")
    events(c, b"MAIL FROM:<>\r\n")
    [e] = events(c, b"DATA\r\n")
    assert e.reply.startswith(b"503 5.5.1 No valid recipients")


def test_size_limit_in_mail_and_data():
    c = wire.LmtpConnection(max_message_size=100)
    events(c, b"LHLO x\r\n")
    [e] = events(c, b"MAIL FROM:<a@b> SIZE=1000\r\n")
    assert e.reply.startswith(b"552")
    evs = events(c, b"MAIL FROM:<a@b>\r\nRCPT TO:<u@x>\r\nDATA\r\n")
    big = b"x" * 50 + b"\r\n"
    c.receive_data(big * 100)
    assert events(c) == []
    evs = events(c, b".\r\n")
    assert evs == [wire.MessageData(b"", True)]
    # the connection is usable afterwards
    assert isinstance(events(c, b"MAIL FROM:<a@b>\r\n")[0], wire.MailFrom)


def test_long_line_rejected_and_recovers():
    c = wire.LmtpConnection(max_line=100)
    evs = events(c, b"LHLO " + b"x" * 500)
    evs += events(c, b"\r\nNOOP\r\n")
    assert isinstance(evs[0], wire.ProtocolError) and evs[0].reply.startswith(b"500")
    assert evs[1] == wire.Simple("NOOP")


@given(st.binary(max_size=400), st.lists(st.integers(1, 50), max_size=20))
def test_never_raises_on_garbage(data, cuts):
    c = wire.LmtpConnection(max_line=64, max_message_size=128)
    pos = 0
    for n in cuts + [len(data)]:
        events(c, data[pos:pos + n])
        pos += n
    events(c, b"")


@given(st.lists(st.integers(1, 30), min_size=1, max_size=30))
def test_chunking_invariance(cuts):
    msg = SESSION + b"a\r\n.b\r\n..\r\n\r\n.\r\nQUIT\r\n"
    ref = events(wire.LmtpConnection(), msg)
    c = wire.LmtpConnection()
    got, pos = [], 0
    for n in cuts:
        got += events(c, msg[pos:pos + n])
        pos += n
    got += events(c, msg[pos:])
    assert got == ref
