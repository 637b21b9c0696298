"""Where a bulk ``STORE 1:* +FLAGS`` spends its time (issue 10, perf3-bulk).

    PYTHONPATH=$PWD .venv/bin/python bench/prof_bulk.py NMSG ROUNDS [OUT|-]

Starts `mailaccess serve` (workers = 1) from the tree on PYTHONPATH, APPENDs
NMSG messages, then runs ROUNDS bulk STOREs alternating ``+FLAGS (\\Seen)``
and ``-FLAGS (\\Seen)`` from a raw-socket client that only counts lines (so
the client's parsing is not in the figures), and prints, per STORE, the
medians of: first byte of the answer (the writer's commit, made durable),
the tagged OK (the loop's formatting and sending), and the server's CPU
(its process tree, from /proc).  Then one ``STORE 1:*`` through imaplib
(what bench_imap.py times).  OUT: a py-spy raw profile of the bulk rounds
(GIL=1 in the environment: only samples holding the GIL).
"""
import asyncio, os, socket, statistics, subprocess, sys, tempfile, time, imaplib
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
import bench_stress as bs

nmsg, rounds = int(sys.argv[1]), int(sys.argv[2])
out = sys.argv[3] if len(sys.argv) > 3 else "-"
root = tempfile.mkdtemp(prefix="bulkprof-")
ma = bs.Mailaccess(os.path.join(root, "m"), 60, 1)
msgs = bs.corpus(400)
ma.start(bs.CHEAP)
pid = ma.pids()[0]
tck = os.sysconf("SC_CLK_TCK")


def cpu():
    t = 0
    for p in ma.pids():
        try:
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            t += int(f[11]) + int(f[12])
        except OSError:
            pass
    return t / tck


asyncio.new_event_loop().run_until_complete(bs.load(ma.port, msgs, nmsg))
s = socket.create_connection(("127.0.0.1", ma.port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = b""


def cmd(tag: bytes, line: bytes):
    """Send LINE; -> (seconds to the first byte, to the tagged reply, untagged lines)."""
    global buf
    t0 = time.perf_counter()
    s.sendall(tag + b" " + line + b"\r\n")
    first = None
    n = 0
    end = b"\r\n" + tag + b" "
    data = b""
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise SystemExit("connection closed")
        if first is None:
            first = time.perf_counter() - t0
        data += chunk
        i = data.find(end)
        if data.startswith(tag + b" ") or i >= 0:
            j = data.find(b"\r\n", (i + 2) if i >= 0 else 0)
            if j >= 0:
                break
    total = time.perf_counter() - t0
    n = data.count(b"\r\n* ") + data.startswith(b"* ")
    if b" OK " not in data[data.rfind(tag + b" "):]:
        raise SystemExit(data[-300:])
    return first, total, n


s.recv(4096)
cmd(b"a", b"LOGIN " + bs.USER.encode() + b" " + bs.PASSWORD.encode())
cmd(b"b", b"SELECT INBOX")
spy = None
if out != "-":
    spy = subprocess.Popen(["/work/main/.venv/bin/py-spy", "record", "-p", str(pid), "-o", out,
                            "-f", "raw", "-r", os.environ.get("RATE", "250"),
                            *(["--gil"] if os.environ.get("GIL") else []), "-d", "600"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
firsts, totals, cpus = [], [], []
for r in range(rounds):
    sign = b"+" if r % 2 == 0 else b"-"
    c0 = cpu()
    f, t, n = cmd(b"s%d" % r, b"STORE 1:* " + sign + b"FLAGS (\\Seen)")
    cpus.append(cpu() - c0)
    if n != nmsg:
        raise SystemExit(f"{n} FETCH lines, expected {nmsg}")
    firsts.append(f)
    totals.append(t)
if spy:
    spy.send_signal(2)
    spy.wait()
ms = lambda xs: f"{1000 * statistics.median(xs):.1f}"  # noqa: E731
print(f"bulk STORE on {nmsg} x{rounds}: first byte {ms(firsts)} ms, tagged OK {ms(totals)} ms, "
      f"server cpu {ms(cpus)} ms (mean {1000 * sum(cpus) / len(cpus):.1f})")
if os.environ.get("EACH"):
    print("  first", " ".join(f"{1000 * x:.0f}" for x in firsts))
    print("  total", " ".join(f"{1000 * x:.0f}" for x in totals))
    print("  cpu  ", " ".join(f"{1000 * x:.0f}" for x in cpus))
s.close()
c = imaplib.IMAP4("127.0.0.1", ma.port)
c.login(bs.USER, bs.PASSWORD)
c.select("INBOX")
lib = []
for r in range(int(os.environ.get("LIBROUNDS", "4"))):
    c.store("1:*", "-FLAGS", r"(\Seen)")
    t0 = time.perf_counter()
    assert c.store("1:*", "+FLAGS", r"(\Seen)")[0] == "OK"
    lib.append(time.perf_counter() - t0)
print(f"imaplib STORE 1:* +FLAGS (\\Seen): median {ms(lib)} ms ("
      + " ".join(f"{1000 * x:.0f}" for x in lib) + ")")
c.logout()
ma.stop()
