"""A checkpoint's header write keeps the previous generation replayable.

One ``fdatasync`` makes no promise about the order in which its pages reach
the disk: a power cut in the middle of a checkpoint's header flush may keep
any subset of what it wrote.  If the new header is lost, recovery takes the
previous one (slot g % 2), restores that snapshot's meta pages and replays
the records of generation g that follow it; so nothing the header flush
writes may destroy those records.  (It once zeroed the first record header
in the same flush: had that page landed and the header's not, recovery would
have rolled data.mdb back to snapshot g and replayed nothing, losing every
acknowledged commit since.)  Records of g need no erasing: the new
generation's reader stops at the first record that is not of its generation.
"""
from __future__ import annotations

from mailaccess.store import redolog


def _header(gen: int, txnid: int) -> redolog.Header:
    meta = bytes(redolog.META_BYTES)
    return redolog.Header(gen, txnid, 4096, (meta, meta))


def _records(log: redolog.RedoLog, gen: int, after: int) -> list[tuple[int, list]]:
    return [(r.txnid, r.ops) for r, _end in redolog.read_records(log.fd, gen, after)]


def test_the_new_header_leaves_the_previous_generations_records_replayable(tmp_path):
    log = redolog.RedoLog(str(tmp_path))
    try:
        log.write_header(_header(7, 100))
        tail = redolog.RECORDS_AT
        want = []
        for txnid in (101, 102, 103):
            ops = [(redolog.PUT, "kw", b"k%d" % txnid, b"v%d" % txnid)]
            tail = log.append(tail, redolog.encode_record(7, txnid, redolog.encode_ops(ops)))
            want.append((txnid, ops))
        assert _records(log, 7, 100) == want

        log.write_header(_header(8, 103))             # the next checkpoint
        # as recovery finds the file if slot 0 (generation 8) never landed
        assert redolog.decode_header(bytes(redolog.HEADER_SLOT)) is None
        assert _records(log, 7, 100) == want
        # and as it finds it if it did: generation 8 has no records yet
        assert log.header().generation == 8
        assert _records(log, 8, 103) == []

        # generation 8's first record overwrites generation 7's; the reader
        # of 8 stops where 7's leftovers begin
        ops = [(redolog.PUT, "kw", b"k104", b"v104")]
        log.append(redolog.RECORDS_AT, redolog.encode_record(8, 104, redolog.encode_ops(ops)))
        assert _records(log, 8, 103) == [(104, ops)]
    finally:
        log.close()


def test_a_process_never_zeroes_records_another_wrote_past_the_size_it_saw(tmp_path):
    """Two processes share the log and each zero-fills it ahead of its
    records as it grows.  One that last saw the file smaller must not fill
    from there: the other has grown it and written acknowledged records past
    that size (it once did, wiping them: recovery after a power cut then
    stopped short)."""
    one = redolog.RedoLog(str(tmp_path))
    two = redolog.RedoLog(str(tmp_path))      # opened while the log was empty
    try:
        one.write_header(_header(3, 10))
        tail = redolog.RECORDS_AT
        want = []
        big = b"x" * (redolog.GROW + 1000)        # past the first step: one grows the file
        for txnid in (11, 12):
            ops = [(redolog.PUT, "kw", b"k%d" % txnid, big)]
            tail = one.append(tail, redolog.encode_record(3, txnid, redolog.encode_ops(ops)))
            want.append((txnid, ops))
        assert two.size < tail                    # what two saw at its last look
        ops = [(redolog.PUT, "kw", b"k13", b"y" * (redolog.GROW + 1000))]
        two.append(tail, redolog.encode_record(3, 13, redolog.encode_ops(ops)))
        want.append((13, ops))
        assert _records(one, 3, 10) == want
    finally:
        one.close()
        two.close()
