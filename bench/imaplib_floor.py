"""imaplib's own time for bench_imap's bulk STORE answer (perf4-bulk).

    .venv/bin/python bench/imaplib_floor.py [NMSG] [ROUNDS]

A fake IMAP server in a forked process (not a thread of the client: it
would share the client's GIL and wait for it on every socket write) answers
``STORE 1:* +FLAGS (\\Seen)`` with NMSG prebuilt lines, the first fifth
``\\Flagged`` too, all written at once; the client is imaplib, as in
bench_imap.  The median is the floor of bench_imap's bulk STORE figure: no
server can be faster than imaplib reading its answer.
"""
import imaplib, os, socket, statistics, sys, time

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
answer = b"".join(b"* %d FETCH (FLAGS (\\Seen%s \\Recent))\r\n"
                  % (i, b" \\Flagged" if i <= n // 5 else b"") for i in range(1, n + 1))
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
port = srv.getsockname()[1]
if os.fork() == 0:
    c, _ = srv.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.sendall(b"* OK fake\r\n")
    f = c.makefile("rb")
    for line in f:
        tag = line.split()[0]
        if b" STORE " in line:
            c.sendall(answer + tag + b" OK STORE completed\r\n")
        elif b" CAPABILITY" in line:
            c.sendall(b"* CAPABILITY IMAP4rev1\r\n" + tag + b" OK done\r\n")
        elif b" LOGOUT" in line:
            c.sendall(b"* BYE\r\n" + tag + b" OK done\r\n")
            break
        else:
            c.sendall(tag + b" OK done\r\n")
    os._exit(0)
srv.close()
c = imaplib.IMAP4("127.0.0.1", port)
c.login("a", "b")
c.select("INBOX")
times = []
for _ in range(rounds):
    t0 = time.perf_counter()
    typ, data = c.store("1:*", "+FLAGS", r"(\Seen)")
    times.append(time.perf_counter() - t0)
    assert typ == "OK" and len(data) == n, (typ, len(data))
c.logout()
os.wait()
print(f"imaplib, {n} FETCH lines written at once: median {1000 * statistics.median(times):.1f} ms, "
      f"best {1000 * min(times):.1f} ms")
