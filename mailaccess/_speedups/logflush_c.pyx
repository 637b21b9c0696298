# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A flush of the redo log begun early and waited for later, compiled twin
of ``logflush_py`` (which documents the contract).

``start()`` asks a POSIX thread of this module for an fdatasync and returns
at once; the thread runs it without the GIL (it never touches a Python
object), so the caller goes on running Python (LMDB's commit, the answer's
formatting) while the disk writes; ``wait(ticket)`` blocks without the GIL
until a flush that began after the ticket was handed out has completed.
The thread is started on the first ``start`` (again after a fork: a child
has no copy of it) and stopped by ``close``.
"""
from libc.errno cimport errno, EIO
from libc.stdlib cimport malloc, free

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_create(pthread_t *thread, const void *attr,
                       void *(*start)(void *) noexcept nogil, void *arg)
    int pthread_join(pthread_t thread, void **ret)
    int pthread_mutex_init(pthread_mutex_t *m, const void *attr)
    int pthread_mutex_destroy(pthread_mutex_t *m)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_cond_init(pthread_cond_t *c, const void *attr)
    int pthread_cond_destroy(pthread_cond_t *c)
    int pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
    int pthread_cond_broadcast(pthread_cond_t *c)

cdef extern from *:
    """
    #include <time.h>
    static inline unsigned long long _lf_load(unsigned long long *p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline double _lf_now(void) {
        struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    static inline void _lf_pause(void) { __builtin_ia32_pause(); }
    """
    unsigned long long _lf_load(unsigned long long *p) nogil
    double _lf_now() nogil
    void _lf_pause() nogil

cdef extern from "<unistd.h>" nogil:
    int fdatasync(int fd)
    int getpid()


ctypedef struct _State:
    pthread_mutex_t mu
    pthread_cond_t asked_cv       # the thread waits here for a ticket
    pthread_cond_t done_cv        # waiters wait here for their flush
    int fd
    unsigned long long asked      # the last ticket handed out
    unsigned long long done       # every ticket up to this one is covered
    int err                       # sticky errno of the first failed flush
    int stop


cdef void *_run(void *arg) noexcept nogil:
    cdef _State *s = <_State *>arg
    cdef unsigned long long upto
    cdef int r, e
    pthread_mutex_lock(&s.mu)
    while True:
        while s.asked == s.done and not s.stop:
            pthread_cond_wait(&s.asked_cv, &s.mu)
        if s.asked == s.done:          # (stop, nothing asked)
            break
        upto = s.asked                 # asked for before this flush begins
        pthread_mutex_unlock(&s.mu)
        r = fdatasync(s.fd)
        e = errno if r != 0 else 0
        if r != 0 and e == 0:
            e = EIO
        pthread_mutex_lock(&s.mu)
        if e != 0 and s.err == 0:
            s.err = e
        s.done = upto
        pthread_cond_broadcast(&s.done_cv)
    pthread_mutex_unlock(&s.mu)
    return NULL


cdef class Flusher:
    """Flushes of one file descriptor (see ``logflush_py``)."""

    cdef _State *_s
    cdef pthread_t _thread
    cdef int _pid                  # the process the thread runs in; 0: none
    cdef public double spin        # seconds wait() polls before it sleeps

    def __cinit__(self, int fd):
        self._s = <_State *>malloc(sizeof(_State))
        if self._s == NULL:
            raise MemoryError()
        self._s.fd = fd
        self._s.asked = 0
        self._s.done = 0
        self._s.err = 0
        self._s.stop = 0
        self._pid = 0
        self.spin = 0.0
        self._init_sync()

    cdef void _init_sync(self) noexcept:
        pthread_mutex_init(&self._s.mu, NULL)
        pthread_cond_init(&self._s.asked_cv, NULL)
        pthread_cond_init(&self._s.done_cv, NULL)

    @property
    def fd(self) -> int:
        return self._s.fd

    cdef int _ensure_thread(self) except -1:
        cdef int pid = getpid()
        if self._pid == pid:
            return 0
        if self._pid != 0:
            # a forked child: the thread (and whoever held the mutex) stayed
            # in the parent; what the parent asked for is its own business
            self._init_sync()
            self._s.done = self._s.asked
            self._s.stop = 0
        if pthread_create(&self._thread, NULL, _run, self._s) != 0:
            raise OSError("logflush: cannot start the flush thread")
        self._pid = pid
        return 0

    def start(self) -> int:
        """Ask for a flush -> its ticket (for ``wait``)."""
        cdef unsigned long long t
        self._ensure_thread()
        pthread_mutex_lock(&self._s.mu)        # (held by the thread only briefly)
        self._s.asked += 1
        t = self._s.asked
        pthread_cond_broadcast(&self._s.asked_cv)
        pthread_mutex_unlock(&self._s.mu)
        return t

    def wait(self, unsigned long long ticket) -> int:
        """Until a flush that began after TICKET was handed out has completed
        -> 0, or the errno of a failed flush (this one's or an earlier one's)."""
        cdef int e
        cdef _State *s = self._s
        if self._pid != getpid():
            # no thread here (never started, or a forked child): flush here
            with nogil:
                pthread_mutex_lock(&s.mu)
                if s.done < ticket and s.err == 0:
                    if fdatasync(s.fd) != 0:
                        s.err = errno if errno != 0 else EIO
                    s.done = s.asked
                e = s.err
                pthread_mutex_unlock(&s.mu)
            return e
        cdef double until
        with nogil:
            if self.spin > 0:
                until = _lf_now() + self.spin
                while _lf_load(&s.done) < ticket and _lf_now() < until:
                    _lf_pause()
            pthread_mutex_lock(&s.mu)
            while s.done < ticket:
                pthread_cond_wait(&s.done_cv, &s.mu)
            e = s.err
            pthread_mutex_unlock(&s.mu)
        return e

    def close(self) -> None:
        """Stop the thread (after the flush asked for last; idempotent)."""
        if self._pid == 0 or self._pid != getpid():
            self._pid = 0
            return
        pthread_mutex_lock(&self._s.mu)
        self._s.stop = 1
        pthread_cond_broadcast(&self._s.asked_cv)
        pthread_mutex_unlock(&self._s.mu)
        with nogil:
            pthread_join(self._thread, NULL)
        self._pid = 0
        self._s.stop = 0

    def __dealloc__(self):
        if self._s != NULL:
            if self._pid != 0 and self._pid == getpid():
                pthread_mutex_lock(&self._s.mu)
                self._s.stop = 1
                pthread_cond_broadcast(&self._s.asked_cv)
                pthread_mutex_unlock(&self._s.mu)
                with nogil:
                    pthread_join(self._thread, NULL)
            free(self._s)
            self._s = NULL
