"""The state table (RFC 9051 §6)."""
import pytest

from mailaccess.proto.imap.state import (
    AUTHENTICATED,
    LOGOUT,
    NOT_AUTHENTICATED,
    SELECTED,
    after_bye,
    after_deselect,
    allowed,
    may_announce_expunge,
    next_state,
    refusal,
)


@pytest.mark.parametrize(
    "state,command,ok",
    [
        (NOT_AUTHENTICATED, "CAPABILITY", True), (NOT_AUTHENTICATED, "LOGIN", True),
        (NOT_AUTHENTICATED, "STARTTLS", True), (NOT_AUTHENTICATED, "AUTHENTICATE", True),
        (NOT_AUTHENTICATED, "ID", True), (NOT_AUTHENTICATED, "SELECT", False),
        (NOT_AUTHENTICATED, "FETCH", False), (NOT_AUTHENTICATED, "ENABLE", False),
        (AUTHENTICATED, "LOGIN", False), (AUTHENTICATED, "STARTTLS", False),
        (AUTHENTICATED, "SELECT", True), (AUTHENTICATED, "ENABLE", True), (AUTHENTICATED, "APPEND", True),
        (AUTHENTICATED, "IDLE", True), (AUTHENTICATED, "FETCH", False), (AUTHENTICATED, "CLOSE", False),
        (AUTHENTICATED, "COMPRESS", True), (AUTHENTICATED, "UNAUTHENTICATE", True),
        (SELECTED, "FETCH", True), (SELECTED, "EXPUNGE", True), (SELECTED, "SORT", True),
        (SELECTED, "THREAD", True), (SELECTED, "MOVE", True), (SELECTED, "ENABLE", False),
        (SELECTED, "LIST", True), (SELECTED, "NOOP", True), (SELECTED, "LOGIN", False),
        (LOGOUT, "NOOP", False), (LOGOUT, "CAPABILITY", False),
    ],
)
def test_allowed(state, command, ok):
    assert allowed(state, command) is ok


def test_transitions():
    assert next_state(NOT_AUTHENTICATED, "LOGIN", True) is AUTHENTICATED
    assert next_state(NOT_AUTHENTICATED, "LOGIN", False) is NOT_AUTHENTICATED
    assert next_state(AUTHENTICATED, "SELECT", True) is SELECTED
    assert next_state(AUTHENTICATED, "SELECT", False) is AUTHENTICATED
    assert next_state(SELECTED, "SELECT", False) is AUTHENTICATED
    assert next_state(SELECTED, "CLOSE", True) is AUTHENTICATED
    assert next_state(SELECTED, "UNSELECT", True) is AUTHENTICATED
    assert next_state(SELECTED, "FETCH", True) is SELECTED
    assert next_state(SELECTED, "UNAUTHENTICATE", True) is NOT_AUTHENTICATED
    for s in (NOT_AUTHENTICATED, AUTHENTICATED, SELECTED):
        assert next_state(s, "LOGOUT", True) is LOGOUT


def test_refusals():
    assert refusal(NOT_AUTHENTICATED, "SELECT") == "SELECT needs you to log in first"
    assert refusal(NOT_AUTHENTICATED, "ENABLE") == "ENABLE needs you to log in first"
    assert refusal(AUTHENTICATED, "LOGIN") == "already authenticated"
    assert refusal(SELECTED, "AUTHENTICATE") == "already authenticated"
    assert refusal(AUTHENTICATED, "FETCH") == "FETCH needs a selected mailbox"
    assert refusal(SELECTED, "ENABLE") == "ENABLE is not allowed once a mailbox is selected"


def test_no_expunge_during_fetch_store_search():
    """RFC 9051 7.5.1 (and SORT/THREAD, which are searches)."""
    for name in ("FETCH", "STORE", "SEARCH", "SORT", "THREAD"):
        assert not may_announce_expunge(name), name
    for name in ("NOOP", "CHECK", "EXPUNGE", "COPY", "MOVE", "APPEND", "IDLE"):
        assert may_announce_expunge(name), name


def test_transitions_no_command_causes():
    for s in (NOT_AUTHENTICATED, AUTHENTICATED, SELECTED):
        assert after_bye(s) is LOGOUT
    assert after_deselect(SELECTED) is AUTHENTICATED
    assert after_deselect(AUTHENTICATED) is AUTHENTICATED
