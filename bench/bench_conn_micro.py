"""The IMAP fixed cost: server CPU per command where the mailbox work is nil.

`mailaccess serve` (workers = 1, the bench_stress "same" cheap hash, its
credential cache on) with an INBOX of 100 messages; C clients for S seconds:

   noop      logged in, INBOX selected, loop NOOP (nothing changes: the
             connection layer, dispatch and the catch-up check alone)
   fetch1    logged in, INBOX selected, loop FETCH n (FLAGS) (a small answer)
   cycle     connect, LOGIN, LOGOUT (greeting, session setup, the login
             service's cache hit, teardown)
   cyclesel  connect, LOGIN, SELECT INBOX, LOGOUT

Prints ops, ops/s and the server's CPU ms per op (user/sys) over its process
tree; with a 4th argument py-spy records the worker (raw format).  Compare
trees back to back, from each tree's root (python -m puts the cwd first):

    PYTHONPATH=$PWD .venv/bin/python bench/bench_conn_micro.py noop 10 8
"""
import asyncio, os, sys, subprocess, tempfile, time, random
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_stress as bs
mode, clients, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
spyout = sys.argv[4] if len(sys.argv) > 4 else None
root = tempfile.mkdtemp(prefix="micro-")
ma = bs.Mailaccess(os.path.join(root, "m"), clients + 50, 1)
ma.start(bs.CHEAP)
loop = asyncio.new_event_loop()
loop.run_until_complete(bs.load(ma.port, bs.corpus(50), 100))
pids = ma.pids()
U, P = bs.USER, bs.PASSWORD

def ut(pids):
    u = s_ = 0
    for pid in pids:
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            u += int(f[11]) + int(f[13]); s_ += int(f[12]) + int(f[14])
        except OSError:
            pass
    return u / bs.TICK, s_ / bs.TICK

async def cmd(c, text):
    c.n += 1
    tag = b"a%d" % c.n
    c.w.write(tag + b" " + text + b"\r\n")
    while True:
        line = await c.r.readline()
        if not line:
            raise SystemExit("closed")
        if line.startswith(tag + b" "):
            if not line.startswith(tag + b" OK"):
                raise SystemExit(line)
            return
        # literals: none expected in these modes except fetch (FLAGS only)

async def client(stop, counter):
    rng = random.Random()
    if mode in ("noop", "fetch1"):
        c = await bs.Conn.open(ma.port)
        await cmd(c, f"LOGIN {U} {P}".encode())
        await cmd(c, b"SELECT INBOX")
        while time.monotonic() < stop:
            if mode == "noop":
                await cmd(c, b"NOOP")
            else:
                await cmd(c, b"FETCH %d (FLAGS)" % rng.randint(1, 100))
            counter[0] += 1
        await cmd(c, b"LOGOUT")
        c.close()
    else:
        while time.monotonic() < stop:
            c = await bs.Conn.open(ma.port)
            await cmd(c, f"LOGIN {U} {P}".encode())
            n = 2
            if mode == "cyclesel":
                await cmd(c, b"SELECT INBOX"); n += 1
            await cmd(c, b"LOGOUT")
            c.close()
            counter[0] += n

async def main():
    # warm up
    counter = [0]
    await asyncio.gather(*(client(time.monotonic() + 1, counter) for _ in range(clients)))
    spy = None
    if spyout:
        spy = subprocess.Popen(["/work/main/.venv/bin/py-spy", "record", "-p", str(pids[0]), "-o", spyout, "-f", "raw", "-r", "200", "-d", str(int(secs))], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(0.5)
    counter = [0]
    c0 = bs.tree_cpu(ma.pids()); t0 = time.monotonic()
    u0, s0 = ut(ma.pids())
    await asyncio.gather(*(client(time.monotonic() + secs - 1, counter) for _ in range(clients)))
    c1 = bs.tree_cpu(ma.pids()); t1 = time.monotonic()
    u1, s1 = ut(ma.pids())
    print(f"{mode} clients={clients} ops={counter[0]} ops/s={counter[0]/(t1-t0):.0f} "
          f"cpu_ms_per_op={(c1-c0)*1000/counter[0]:.3f} (cpu {c1-c0:.2f}s) user/sys ms per op {(u1-u0)*1000/counter[0]:.3f}/{(s1-s0)*1000/counter[0]:.3f}")
    if spy: spy.wait()

loop.run_until_complete(main())
ma.stop()
