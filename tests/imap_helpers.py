"""Shared pieces for IMAP service tests: a server with a user, real clients."""
import imaplib
import os
import ssl

import pytest
import trio

from mailaccess import accounts


def ca_file(ctx) -> str:
    return os.path.join(ctx.cfg.data_dir, "tls", "selfsigned-ca.pem")


def client_ssl(ctx) -> ssl.SSLContext:
    c = ssl.create_default_context(cafile=ca_file(ctx))
    return c


def imap_port(ctx) -> int:
    return ctx.bound["imap"][0][1]


def imaps_port(ctx) -> int:
    return ctx.bound["imaps"][0][1]


def connect(ctx, user="alice", password="pw") -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", imap_port(ctx), timeout=30)
    if user:
        c.login(user, password)
    return c


def msg(subject="hello", body="body text", mid=None, frm="Sender <s@example.org>", extra=""):
    mid = mid or f"<{subject.replace(' ', '.')}@test>"
    return (f"From: {frm}\r\nTo: alice@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: {mid}\r\nDate: Mon, 3 Nov 2025 10:00:00 +0000\r\n{extra}\r\n"
            f"{body}\r\n").encode()


async def run(fn, *args):
    """Run a blocking client function in a thread (the server stays on the loop)."""
    with trio.fail_after(60):
        return await trio.to_thread.run_sync(fn, *args)
