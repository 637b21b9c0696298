"""Name and keyword limits: an over-long keyword or mailbox name gets BAD/NO
with a clear text, never an LMDB key error, and the session goes on."""
import imaplib

import pytest
from hypothesis import given, settings, strategies as st

from imap_helpers import connect, msg, run
from mailaccess import vocab
from mailaccess.store import InvalidName, ops


def _fresh(c):
    """The session still answers."""
    typ, _ = c.noop()
    assert typ == "OK"


async def test_store_of_an_over_long_keyword_is_bad_and_the_session_goes_on(imap_server):
    def go():
        c = connect(imap_server)
        c.append("INBOX", None, None, msg())
        c.select("INBOX")
        with pytest.raises(imaplib.IMAP4.error) as e:
            c.store("1", "+FLAGS", "(" + "k" * 600 + ")")
        assert "keyword too long" in str(e.value)
        _fresh(c)
        # at the limit it works, and the keyword comes back as sent
        kw = "K" * vocab.MAX_KEYWORD_BYTES
        typ, data = c.store("1", "+FLAGS", f"({kw})")
        assert typ == "OK" and kw.encode() in data[0]
        with pytest.raises(imaplib.IMAP4.error):
            c.append("INBOX", "(" + "x" * 600 + ")", None, msg())
        _fresh(c)
        c.logout()
    await run(go)


async def test_over_long_mailbox_names_get_no_and_the_session_goes_on(imap_server):
    level = "a" * vocab.MAX_MAILBOX_LEVEL_BYTES

    def go():
        c = connect(imap_server)
        # a level too long, a path too long: NO [CANNOT], nothing created
        for name in ("b" * 600, "/".join([level] * 3)):
            typ, data = c.create(name)
            assert typ == "NO" and b"[CANNOT]" in data[0] and b"too long" in data[0], data
            _fresh(c)
        # selecting, deleting, subscribing such names: NO, the session goes on
        for cmd in (c.select, c.delete, c.subscribe, c.unsubscribe):
            typ, _ = cmd("c" * 700)
            assert typ == "NO"
            _fresh(c)
        # the longest name allowed is created, subscribed, deleted
        two = f"{level}/{level}"
        assert c.create(two)[0] == "OK"
        assert c.subscribe(two)[0] == "OK"
        assert c.delete(two)[0] == "OK"
        # renaming a parent so that a child's full name would be too long
        assert c.create(f"p/{level}/{level}")[0] == "OK"
        typ, data = c.rename("p", "q" * 150)
        assert typ == "NO" and b"too long" in data[0], data
        assert c.rename("p", "q")[0] == "OK"
        _fresh(c)
        c.logout()
    await run(go)


async def test_a_subscribed_mailbox_whose_path_is_over_511_bytes_can_be_deleted(imap_server):
    """A name made before there were limits (written straight into the store)."""
    store = imap_server.store
    level = "d" * vocab.MAX_MAILBOX_LEVEL_BYTES
    with store.view() as v:
        acc = v.account_by_name("alice").id

    def make(tx):
        # short names, then each level renamed long past the path limit, as
        # an old version allowed
        ids = []
        for part in ("a", "b", "c"):
            ids.append(ops.create_mailbox(tx, acc, ids[-1] if ids else 0, part))
        saved = ops.MAX_PATH_BYTES
        ops.MAX_PATH_BYTES = 10_000
        try:
            for i, mbx in enumerate(ids):
                ops.rename_mailbox(tx, acc, mbx, ids[i - 1] if i else 0, level)
        finally:
            ops.MAX_PATH_BYTES = saved

    await run(lambda: store.write_sync(make))
    name = "/".join([level] * 3)

    def go():
        c = connect(imap_server)
        assert c.subscribe(name)[0] == "OK"
        assert c.delete(name)[0] == "OK"
        assert c.delete(f"{level}/{level}")[0] == "OK"
        _fresh(c)
        c.logout()
    await run(go)


def test_the_store_never_builds_a_key_lmdb_refuses(tmp_path):
    from mailaccess import accounts
    from mailaccess.store import Store

    with Store(tmp_path / "s") as s:
        accounts.add_user(s, "alice", "pw")
        with s.view() as v:
            acc = v.account_by_name("alice").id
        with pytest.raises(InvalidName):
            s.write_sync(ops.create_mailbox, acc, 0, "x" * 600)
        with pytest.raises(InvalidName):
            s.write_sync(ops.create_mailbox_path, acc, ["y" * 200] * 3)
        with pytest.raises(InvalidName):
            s.write_sync(ops.set_keywords, acc, [], add=["z" * 600])
        assert s.write_sync(ops.unsubscribe_name, acc, "w" * 600) is False
        with s.view() as v:
            assert v.child_id(acc, 0, "y" * 200) is None   # nothing half-made
            # lookups of names no key can hold find nothing
            assert v.child_id(acc, 0, "v" * 600) is None
            assert v.account_by_name("") is None
            assert v.account_by_name("u" * 600) is None


_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/"),
                 min_size=0, max_size=300)


@pytest.fixture(scope="module")
def hyp_store(tmp_path_factory):
    from mailaccess import accounts
    from mailaccess.store import Store

    with Store(tmp_path_factory.mktemp("hyp") / "s") as s:
        accounts.add_user(s, "alice", "pw")
        yield s


@settings(max_examples=60, deadline=None)
@given(path=st.lists(_names, min_size=1, max_size=4),
       kw=st.text(st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_any_name_or_keyword_is_stored_or_refused_as_invalid(hyp_store, path, kw):
    """Never an lmdb error: a name or keyword is accepted within the limits,
    or refused with InvalidName (the protocols' NO/BAD)."""
    from mailaccess.store import AlreadyExists

    s = hyp_store
    with s.view() as v:
        acc = v.account_by_name("alice").id
    full = "/".join(path).encode()
    try:
        s.write_sync(ops.create_mailbox_path, acc, path)
        assert len(full) <= vocab.MAX_MAILBOX_PATH_BYTES
    except InvalidName:
        assert (len(full) > vocab.MAX_MAILBOX_PATH_BYTES or
                any(not p or len(p.encode()) > vocab.MAX_MAILBOX_LEVEL_BYTES
                    or any(ord(c) < 0x20 or c == "\x7f" for c in p) for p in path))
    except AlreadyExists:
        pass
    try:
        s.write_sync(ops.set_keywords, acc, [], add=[kw])
        assert 0 < len(kw.encode()) <= vocab.MAX_KEYWORD_BYTES
    except InvalidName:
        assert not kw or len(kw.encode()) > vocab.MAX_KEYWORD_BYTES

