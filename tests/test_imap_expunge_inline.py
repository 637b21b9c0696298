"""An EXPUNGE of a few messages while no other command runs in the worker
is written by the loop itself when the writer thread is idle
(storeio.write_small, as a small STORE is: no hand-off to the writer thread
and back); a bigger one, or one beside another command, goes to the writer
as before.  Either way the answer is the same: the EXPUNGE responses, then
OK, and the messages are gone from the store."""
import trio

from imap_helpers import AsyncRaw, msg


def literal(data: bytes) -> str:
    return "{%d+}\r\n" % len(data) + data.decode()


async def _quiet_writer(store, monkeypatch) -> list:
    """The writer thread does no idle work from now on; -> the results of
    store.write_here (True: the loop wrote it) from here on."""
    monkeypatch.setattr(store, "_idle_timeout", lambda: None)
    await trio.sleep(0.3)
    here = []
    real_here = store.write_here
    monkeypatch.setattr(store, "write_here", lambda *a: here.append(real_here(*a)) or here[-1])
    return here


async def _writer_idle(store) -> None:
    while store._busy.locked() or not store._queue.empty():
        await trio.sleep(0.01)


async def test_a_small_expunge_is_written_by_the_loop(imap_server, monkeypatch):
    a = await AsyncRaw.login(imap_server, hide_recent=True)
    for i in range(12):
        await a.cmd("APPEND INBOX " + literal(msg(f"m{i}")))
    await a.cmd("SELECT INBOX")
    store = imap_server.store
    here = await _quiet_writer(store, monkeypatch)
    submitted = []
    real_submit = store.submit
    monkeypatch.setattr(store, "submit",
                        lambda fn, *args, done: submitted.append(getattr(fn, "__name__", None)) or
                        real_submit(fn, *args, done=done))
    await a.cmd("STORE 2,5 +FLAGS.SILENT (\\Deleted)")
    await _writer_idle(store)
    del here[:], submitted[:]
    got = await a.cmd("EXPUNGE")
    assert got == [b"* 5 EXPUNGE", b"* 2 EXPUNGE", b"t%d OK EXPUNGE completed" % a.n], got
    assert here == [True] and "expunge" not in submitted
    # more than a few: the writer thread writes it
    await a.cmd("STORE 1:9 +FLAGS.SILENT (\\Deleted)")
    await _writer_idle(store)
    del here[:], submitted[:]
    got = await a.cmd("EXPUNGE")
    assert got == [b"* %d EXPUNGE" % n for n in range(9, 0, -1)] + [b"t%d OK EXPUNGE completed" % a.n], got
    assert here == [] and submitted == ["expunge"]
    got = await a.cmd("UID SEARCH ALL")
    assert got[0] == b"* SEARCH 12", got
    a.close()
