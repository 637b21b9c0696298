"""Hostile input that made the server's work grow faster than the input, or
held the event loop for a long time (the loop-stall audit of IMAP, LMTP and
mime/).  Each case is behaviour: the call returns the right answer on an input
within the real bounds that took minutes before.  No timing thresholds: a
regression shows as a test that does not finish.
"""
import pytest

from conftest import twin_params

# ---------------------------------------------------------- RFC 2047 words

# 32 MB of adjacent encoded words in one charset, each half a character: the
# run's bytes were gathered with bytes += (quadratic: a 4 MB Subject took 2 s
# to 7 s to index, this one hours); a 64 MB message may hold it
WORDS = 2_000_000


@pytest.mark.parametrize("impl", twin_params("msgindex"))
def test_decode_words_of_a_huge_run_of_encoded_words(impl):
    value = b"=?utf-8?q?=C3?= =?UTF-8?Q?=A9?= " * WORDS + b"end"
    assert impl.decode_words(value) == "\u00e9" * WORDS + " end"


@pytest.mark.parametrize("impl", twin_params("msgindex"))
def test_decode_words_joins_a_run_per_charset(impl):
    value = (b"a =?utf-8?q?=C3?= =?utf-8?q?=A9?= =?iso-8859-1?q?=E9?= b "
             b"=?x-unknown?q?z?= =?utf-8?b?w6k=?=")
    assert impl.decode_words(value) == "a \u00e9\u00e9 b z\u00e9"
