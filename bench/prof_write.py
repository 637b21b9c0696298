"""The write path's CPU per command (issue 10, perf-write), for A/B runs on a busy machine.

    PYTHONPATH=$PWD .venv/bin/python bench/prof_write.py NMSG NSTORE OUT|- [append|store|bulk]

Starts `mailaccess serve` (workers = 1) from the tree on PYTHONPATH, APPENDs
1,000 messages from one client (then the rest of NMSG from 8), runs NSTORE
single `UID STORE +FLAGS (\\Flagged)`, then three `STORE 1:* +FLAGS`; prints
per phase the rate, and the server's CPU seconds per 1,000 commands (its
process tree, from /proc): the figure to compare when wall-clock is noise.
OUT: a py-spy raw profile of the named phase (GIL=1 in the environment:
only samples holding the GIL), or - for none.
"""
import asyncio, os, sys, subprocess, tempfile, time, imaplib
sys.path.insert(0, os.path.join(os.getcwd(), "bench"))
import bench_stress as bs
nmsg, nstore, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
phase = sys.argv[4] if len(sys.argv) > 4 else "store"
root = tempfile.mkdtemp(prefix="wrprof-")
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
        except OSError: pass
    return t / tck
def spy(name, secs):
    if out == "-" or phase != name: return None
    return subprocess.Popen(["/work/main/.venv/bin/py-spy", "record", "-p", str(pid), "-o", out, "-f", "raw", "-r", os.environ.get("RATE", "250"), *(["--native"] if os.environ.get("NATIVE") else []), *(["--gil"] if os.environ.get("GIL") else []), "-d", str(secs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
c = imaplib.IMAP4("127.0.0.1", ma.port); c.login(bs.USER, bs.PASSWORD)
napp = min(nmsg, 1000)
s = spy("append", 60); time.sleep(0.5 if s else 0)
c0, t0 = cpu(), time.perf_counter()
for i in range(napp):
    assert c.append("INBOX", None, None, msgs[i % len(msgs)])[0] == "OK"
print(f"APPEND x{napp} 1 client: {napp/(time.perf_counter()-t0):.0f}/s  cpu {1000*(cpu()-c0)/napp:.3f} s/1000")
if s: s.send_signal(2); s.wait()
if nmsg > napp:
    asyncio.new_event_loop().run_until_complete(bs.load(ma.port, msgs, nmsg - napp))
c.select("INBOX")
s = spy("store", 60); time.sleep(0.5 if s else 0)
c0, t0 = cpu(), time.perf_counter()
for u in range(1, nstore + 1):
    assert c.uid("STORE", str(u), "+FLAGS", r"(\Flagged)")[0] == "OK"
dt = time.perf_counter() - t0
if nstore: print(f"UID STORE x{nstore}: {nstore/dt:.0f}/s  {1000*dt/nstore:.3f} ms/cmd  cpu {1000*(cpu()-c0)/nstore:.3f} s/1000")
if s: s.send_signal(2); s.wait()
s = spy("bulk", 60); time.sleep(0.5 if s else 0)
bt = []; bc = []
for kw in (r"(\Seen)", r"(\Answered)", r"($x1)"):
    c0, t0 = cpu(), time.perf_counter()
    assert c.store("1:*", "+FLAGS", kw)[0] == "OK"
    bt.append(time.perf_counter() - t0); bc.append(cpu() - c0)
print(f"STORE 1:* on {nmsg}: " + " ".join(f"{1000*t:.0f}ms" for t in bt) + "  cpu " + " ".join(f"{1000*t:.0f}ms" for t in bc))
if s: s.send_signal(2); s.wait()
c.logout()
ma.stop()
