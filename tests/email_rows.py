"""Helpers of the per-email row tables' tests (store/keys.py EMAIL_ROWS:
test_msg_bs.py, test_msg_hdr.py): read or drop an account's rows."""
import contextlib

from mailaccess.store import Store, keys


@contextlib.contextmanager
def started_store(path):
    """A store at PATH, started, closed on the way out."""
    st_ = Store(str(path))
    st_.start()
    try:
        yield st_
    finally:
        st_.close()


def table_rows(st_, acc: int, table: str) -> dict[int, bytes]:
    """ACC's rows of TABLE: email id -> value."""
    pre = keys.account_prefix(acc)
    out = {}
    with st_.read() as txn:
        cur = txn.cursor(db=st_.db[table])
        if cur.set_range(pre):
            for k, v in cur:
                k = bytes(k)
                if not k.startswith(pre):
                    break
                out[keys.split_msg(k)[1]] = bytes(v)
    return out


def drop_table_rows(st_, acc: int, table: str, eids=None) -> None:
    """Delete the TABLE rows of EIDS (None: all of ACC's), as mail stored
    before the table has none."""
    def drop(tx):
        for eid in (eids if eids is not None else list(table_rows(st_, acc, table))):
            tx.delete(table, keys.msg(acc, eid))
    st_.write_sync(drop)


def load_inbox(st_, n: int, prepared) -> tuple[int, int]:
    """A new account "a" with N messages in its INBOX, message k being
    ``prepared(k)``: (NewEmail, keywords).  -> (account, INBOX id)."""
    from mailaccess.store import ops
    acc = st_.write_sync(ops.create_account, "a", "h")
    with st_.view() as v:
        ib = v.mailbox_by_role(acc, "inbox").id

    def load(tx):
        for k in range(n):
            new, kws = prepared(k)
            ops.append(tx, acc, [ib], new, keywords=kws)
    st_.write_sync(load)
    return acc, ib


def rows_after_delete_account(st_, acc: int, table: str, new) -> tuple[dict, dict]:
    """Make account "b" with one message NEW (a NewEmail), delete ACC:
    -> (ACC's rows of TABLE, b's)."""
    from mailaccess.store import ops
    other = st_.write_sync(ops.create_account, "b", "h")
    with st_.view() as v:
        ob = v.mailbox_by_role(other, "inbox").id
    st_.write_sync(ops.append, other, [ob], new)
    st_.write_sync(ops.delete_account, acc)
    return table_rows(st_, acc, table), table_rows(st_, other, table)
