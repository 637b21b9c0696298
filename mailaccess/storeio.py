"""Trio side of the store: await a durable write, run long work off-loop.

``await write(store, fn, *args)`` queues ``fn(tx, *args)`` on the writer
thread and returns its result once the commit that holds it is on disk.  The
write is not cancelled with the caller: once queued it lands (an ack may be
lost, the data is not half-written).

``write_gathered(store, fn, *args)`` is ``write`` for an IMAP APPEND: held
on the loop while the APPENDs other sessions announced are on their way,
then written with them in one batch, by the loop itself when the writer
thread is idle.

``stream(store, fn, *args)`` queues a write whose function hands the loop
parts of its result from inside its transaction, before the commit (a
bulk STORE's answer leaves while it is written).

``await read(store, fn, *args)`` (search, sort, thread) and ``await
cpu(fn, *args)`` (indexing a delivered or appended message) run in worker
threads, at most CPU_THREADS at once for the whole server: the event loop
keeps answering every other session meanwhile, and a crowd of expensive
commands queues for the pool instead of starving the loop of the GIL.
"""
from __future__ import annotations

import collections
import functools
import itertools
import threading
from typing import Any, Callable

import trio

from . import loophop
from .store import Store
from .store import coming as _coming

try:        # the running Trio's state: _loop_idle reads its run queue
    from trio._core._run import GLOBAL_RUN_CONTEXT as _RUN_CONTEXT
except ImportError:     # pragma: no cover - another Trio: the public statistics
    _RUN_CONTEXT = None


async def write(store: Store, fn: Callable[..., Any], *args, **kwargs) -> Any:
    hop = loophop.current()
    task = trio.lowlevel.current_task()
    box: list = []

    def finished(result, error):        # the writer thread, after the commit
        hop.call(_wake, task, box, result, error)

    if kwargs:
        fn = functools.partial(fn, **kwargs)
    if store.around_completions is None:
        store.around_completions = loophop.batched
    store.submit(fn, *args, done=finished)
    # not cancellable: once queued the write lands, and the caller learns
    # how it went (an abort that always fails is a shield, without the scope)
    await trio.lowlevel.wait_task_rescheduled(_no_abort)
    result, error = box[0]
    if error is not None:
        raise error
    return result


async def write_small(store: Store, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """``write`` of a small change (a few records: a STORE on a few
    messages): when the writer thread is idle the loop runs it itself
    (``write_now``), else as ``write``."""
    result = write_now(store, fn, *args, **kwargs)
    if result is NOT_NOW:
        return await write(store, fn, *args, **kwargs)
    return result


NOT_NOW = object()      # write_now: the write was not run (the caller writes as usual)


def write_now(store: Store, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Run the small write ``fn(tx, *args)`` on the loop, now, when the
    writer thread is idle and no other task is ready to run
    (``Store.write_here``: the same transaction, flush and commit, without
    the two thread hand-offs, but holding the loop for the log's flush, so
    only for writes of a few records) -> its result once durable; NOT_NOW
    when it was not run (then nothing was written: ``write`` it).  Nothing
    awaits in between: the caller knows that no other task of this loop ran
    between the commit and its next line."""
    if not _loop_idle():
        return NOT_NOW
    if kwargs:
        fn = functools.partial(fn, **kwargs)
    if store.around_completions is None:
        store.around_completions = loophop.batched
    box: list = []
    with loophop.here():
        ran = store.write_here(fn, args, lambda result, error: box.append((result, error)))
    if not ran:
        return NOT_NOW
    result, error = box[0]
    if error is not None:
        raise error
    return result


class _Gather:
    """Writes held on the loop for the APPENDs announced after them."""

    __slots__ = ("jobs", "full")

    def __init__(self, jobs: list):
        self.jobs = jobs                # [(fn, args, Pending)], in arrival order
        self.full = trio.Event()        # nothing more is announced: write them


_gathers: trio.lowlevel.RunVar = trio.lowlevel.RunVar("mailaccess_gathers")


async def write_gathered(store: Store, fn: Callable[..., Any], *args) -> Any:
    """``write`` of an APPEND (a small one: the loop may write it itself).

    With 4 clients appending over 2 worker processes, the sessions of one
    process take turns: when one APPEND's write is ready, the other
    client's next APPEND is usually on its way (announced in
    ``store.coming`` from its previous APPEND's OK, and again when its "+"
    went out).  The write waits on the loop, at most
    ``coming.WAIT``, until no announced write is left, each one joining
    as it comes; then all of them are written in one batch (one commit,
    one flush of the redo log), by the loop itself when the writer thread
    is idle and nothing else is ready to run (``Store.write_here_many``:
    no hand-off to the writer thread, which would fight the loop for the
    GIL), else by the writer thread as ``write``.  Either way each returns
    its result once its commit is durable, and once joined a write lands
    whatever the caller does next (the wait is shielded: a cancelled
    session's write, or the writes that joined it, are never dropped)."""
    p = Pending()
    try:
        gathers = _gathers.get()
    except LookupError:
        gathers = {}
        _gathers.set(gathers)
    g = gathers.get(store)
    if g is not None:                   # an earlier write waits for this one
        g.jobs.append((fn, args, p))
        if not store.coming.pending():
            g.full.set()
        return await p.wait()
    jobs = [(fn, args, p)]
    if store.coming.pending():
        g = gathers[store] = _Gather(jobs)
        try:
            with trio.CancelScope(shield=True) as scope:
                scope.deadline = trio.current_time() + _coming.WAIT
                await g.full.wait()
        finally:
            del gathers[store]
    _write_jobs(store, jobs)
    return await p.wait()


def _write_jobs(store: Store, jobs: list) -> None:
    """Write JOBS ([(fn, args, Pending)]): by the loop itself in one batch
    when it can (write_here_many), else queued for the writer thread."""
    hop = loophop.current()
    if store.around_completions is None:
        store.around_completions = loophop.batched
    if _loop_idle():
        # done() runs on this thread (the flush made here) or on the sync
        # thread: through the hop either way (here: at the end of the block)
        with loophop.here():
            if store.write_here_many([(f, a, functools.partial(_hop_done, hop, q))
                                      for f, a, q in jobs]):
                return
    for f, a, q in jobs:
        _submit(store, hop, f, a, {}, q._done)


def _hop_done(hop: loophop.Hop, p: Pending, result, error) -> None:
    hop.call(p._done, result, error)


def _loop_idle() -> bool:
    """No task of this Trio run is ready to run (``current_statistics().
    tasks_runnable == 0``, without building the statistics: the run queue's
    length when this Trio exposes it)."""
    runner = getattr(_RUN_CONTEXT, "runner", None)
    runq = getattr(runner, "runq", None)
    if runq is None:
        return trio.lowlevel.current_statistics().tasks_runnable == 0
    return not runq


class Pending:
    """A write queued by ``start``: ``await pending.wait()`` -> its result
    once its commit is durable (at once if it is already)."""

    __slots__ = ("box", "task")

    def __init__(self):
        self.box: list = []
        self.task = None

    def _wake(self) -> None:
        task, self.task = self.task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    def _done(self, result, error) -> None:          # on the loop
        self.box.append((result, error))
        self._wake()

    async def _sleep(self) -> None:
        self.task = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(_no_abort)

    async def wait(self) -> Any:
        while not self.box:
            await self._sleep()
        result, error = self.box[0]
        if error is not None:
            raise error
        return result


def _submit(store: Store, hop, fn: Callable[..., Any], args, kwargs, done) -> None:
    """Queue ``fn(tx, *args, **kwargs)``; ``done(result, error)`` on the loop after."""
    def finished(result, error):        # the writer thread, after the commit
        hop.call(done, result, error)

    if kwargs:
        fn = functools.partial(fn, **kwargs)
    if store.around_completions is None:
        store.around_completions = loophop.batched
    store.submit(fn, *args, done=finished)


def start(store: Store, fn: Callable[..., Any], *args, **kwargs) -> Pending:
    """Queue ``fn(tx, *args)`` now and go on (the caller formats the answer
    of an earlier write meanwhile); ``await`` the Pending for its result.
    Like ``write``, a queued write lands whatever the caller does next."""
    p = Pending()
    _submit(store, loophop.current(), fn, args, kwargs, p._done)
    return p


class Stream(Pending):
    """A write queued by ``stream``, whose function hands the loop parts of
    its result while it runs: ``await s.next()`` -> the next part, in order,
    or None once the write is over; then ``await s.wait()`` -> its result
    (raised: its error) once its commit is durable.

    A part is what the function saw inside its transaction, before the
    commit: not durable, and not even committed when the commit then fails
    (``wait`` raises).  A write the writer runs again (after growing the
    map) emits its parts again from the first: a part numbered 0 after
    others starts that second run."""

    __slots__ = ("parts",)

    def __init__(self):
        super().__init__()
        self.parts: collections.deque = collections.deque()

    def _part(self, part, taken: threading.Event) -> None:     # on the loop
        self.parts.append(part)
        self._wake()
        taken.set()

    async def next(self):
        """-> (number within the run, part), or None: the write finished."""
        while not self.parts:
            if self.box:
                return None
            await self._sleep()
        return self.parts.popleft()


def stream(store: Store, fn: Callable[..., Any], *args, **kwargs) -> Stream:
    """Queue ``fn(tx, *args, emit=EMIT, **kwargs)`` now, as ``start``; FN
    calls ``EMIT(*part)`` on the writer thread, inside its transaction, and
    the loop gets ``(n, part)`` from ``Stream.next`` (N counts the parts of
    one run of FN: calls hop to the loop in order, before the result)."""
    hop = loophop.current()
    s = Stream()

    def run(tx, *a, **kw):              # the writer thread; again after a map growth
        n = itertools.count()

        def emit(*part):
            # The writer waits (GIL released) until the loop has the part:
            # else the loop, woken while the writer computes on, would get
            # the GIL back only after the interpreter's switch interval
            # (5 ms), and the part would leave that much later.
            taken = threading.Event()
            hop.call(s._part, (next(n), part), taken)
            taken.wait(HANDOFF_WAIT)

        return fn(tx, *a, emit=emit, **kw)

    _submit(store, hop, run, args, kwargs, s._done)
    return s


def _wake(task, box: list, result, error) -> None:
    box.append((result, error))
    trio.lowlevel.reschedule(task)


def _no_abort(_raise_cancel):
    return trio.lowlevel.Abort.FAILED


# seconds the writer waits at most for the loop to take a part of a
# streamed write (stream): a loop busy elsewhere costs the writer no more
HANDOFF_WAIT = 0.002
# worker threads for CPU-bound work, shared by every session of one server
# (one limiter per Trio run); more would only contend for the GIL
CPU_THREADS = 4
# messages at least this big are indexed off the event loop (APPEND, LMTP)
OFFLOOP_BYTES = 64 * 1024
# an APPEND (its messages together) below this size is written by
# write_gathered, which may write it on the loop; a bigger one by write
GATHER_BYTES = 64 * 1024
_cpu_limiter: trio.lowlevel.RunVar = trio.lowlevel.RunVar("mailaccess_cpu_limiter")


def cpu_limiter() -> trio.CapacityLimiter:
    """The server's pool of CPU_THREADS worker threads (created on first use)."""
    try:
        return _cpu_limiter.get()
    except LookupError:
        limiter = trio.CapacityLimiter(CPU_THREADS)
        _cpu_limiter.set(limiter)
        return limiter


async def cpu(fn: Callable[..., Any], *args) -> Any:
    """``fn(*args)`` in the bounded worker pool."""
    return await trio.to_thread.run_sync(fn, *args, limiter=cpu_limiter())


async def read(store: Store, fn: Callable[..., Any], *args) -> Any:
    """Run ``fn(view, *args)`` over a fresh snapshot in the bounded worker
    pool: for reads that may take more than a millisecond or two (search,
    sort, thread)."""

    def run():
        with store.view() as v:
            return fn(v, *args)

    return await cpu(run)
