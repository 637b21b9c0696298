import socket, ssl
from imap_helpers import imap_port, run

def raw(ctx, lines):
    s = socket.create_connection(("127.0.0.1", imap_port(ctx)))
    s.settimeout(3)
    out = [s.recv(65536)]
    for l in lines:
        s.sendall(l)
        import time; time.sleep(0.3)
        try:
            out.append(s.recv(65536))
        except socket.timeout:
            out.append(b"<timeout>")
    s.close()
    return b"".join(out).decode("utf-8", "replace")

async def test_dbg(imap_server):
    print(await run(raw, imap_server, [b"a LOGIN alice pw\r\n", b"b APPEND INBOX (\\Seen $Forwarded) {27+}\r\nSubject: x\r\n\r\nbody\r\n\r\n",
        b"c SELECT INBOX\r\n", b'd FETCH 1 FLAGS\r\n', b'e STORE 1 +FLAGS ($MDNSent)\r\n', b'f UID FETCH 1:* (FLAGS)\r\n']))
