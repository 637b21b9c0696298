"""The state table (RFC 9051 §6)."""
import pytest

from mailaccess.proto.imap.state import (
    AUTHENTICATED,
    LOGOUT,
    NOT_AUTHENTICATED,
    SELECTED,
    allowed,
    next_state,
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
