"""Big FETCH answers stream in slices; a client that vanishes mid-answer does
not wedge the server."""
import socket

from imap_helpers import connect, imap_port, msg, run


async def test_big_fetch_streams_and_client_can_vanish(imap_server):
    from mailaccess.store import ops
    from mailaccess import ingest
    st = imap_server.store
    with st.view() as v:
        acc = v.account_by_name("alice").id
        ib = v.mailbox_by_role(acc, "inbox").id
    news = [ingest.prepare(msg(f"m{i}", body="x" * 200), 1_700_000_000 + i) for i in range(1500)]

    def load(tx):
        for n in news:
            ops.append(tx, acc, [ib], n)
    st.write_sync(load)

    def full():
        c = connect(imap_server)
        c.select("INBOX")
        typ, data = c.fetch("1:*", "(UID FLAGS ENVELOPE)")
        assert typ == "OK" and len(data) == 1500
        assert b"UID 1500 " in data[-1]
        c.logout()
    await run(full)

    def vanish():
        s = socket.create_connection(("127.0.0.1", imap_port(imap_server)), timeout=10)
        f = s.makefile("rwb")
        f.readline()
        f.write(b"a LOGIN alice pw\r\nb SELECT INBOX\r\nc FETCH 1:* (ENVELOPE BODY.PEEK[])\r\n")
        f.flush()
        f.readline()
        s.close()          # gone before the answer is done
    await run(vanish)
    await run(full)        # the server is still serving
