"""IMAP connection states and what each allows (RFC 9051 §3 and §6), as data.

Rule 1 (h11 ``_state.py``): everything that decides which command may run in
which state, and where a command leads, lives in this file; the session layer
asks ``allowed`` and ``next_state`` and keeps no ``if state == ...`` of its own.
The session's dispatcher (``server/imap_session.py`` ``ImapSession.handle``)
and the service's IDLE and AUTHENTICATE entry points are the callers.
Rule 2: the tables are about the protocol, not about policy (capabilities the
server chooses not to offer, such as LOGINDISABLED, are the session's call).

The third table, ``NO_EXPUNGE_DURING``, is RFC 9051 §7.5.1: the commands
whose responses must not carry an EXPUNGE (the dispatcher's one
``refresh`` after each command asks ``may_announce_expunge``).

Command names are the ``NAME`` of ``events`` classes; UID variants share the
name of their base command (``UID FETCH`` is ``"FETCH"``).
"""
from __future__ import annotations

import enum


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


NOT_AUTHENTICATED = State.NOT_AUTHENTICATED
AUTHENTICATED = State.AUTHENTICATED
SELECTED = State.SELECTED
LOGOUT = State.LOGOUT

# §6.1 valid in any state (ID: RFC 2971 allows it before and after login)
ANY_STATE = frozenset({"CAPABILITY", "NOOP", "LOGOUT", "ID"})
# §6.2
NOT_AUTHENTICATED_ONLY = frozenset({"STARTTLS", "AUTHENTICATE", "LOGIN"})
# §6.3 (ENABLE: RFC 5161, only before SELECT; COMPRESS: RFC 4978 after auth;
# UNAUTHENTICATE: RFC 8437; quota: RFC 9208; NOTIFY: RFC 5465)
AUTHENTICATED_AND_SELECTED = frozenset(
    {
        "SELECT", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB",
        "NAMESPACE", "STATUS", "APPEND", "IDLE", "COMPRESS", "UNAUTHENTICATE", "GETQUOTA",
        "GETQUOTAROOT", "SETQUOTA", "NOTIFY",
    }
)
AUTHENTICATED_ONLY = frozenset({"ENABLE"})
# §6.4
SELECTED_ONLY = frozenset(
    {"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "SORT", "THREAD",
     "CANCELUPDATE"}   # CANCELUPDATE: RFC 5267 command-select
)

ALLOWED: dict[State, frozenset[str]] = {
    NOT_AUTHENTICATED: ANY_STATE | NOT_AUTHENTICATED_ONLY,
    AUTHENTICATED: ANY_STATE | AUTHENTICATED_AND_SELECTED | AUTHENTICATED_ONLY,
    SELECTED: ANY_STATE | AUTHENTICATED_AND_SELECTED | SELECTED_ONLY,
    LOGOUT: frozenset(),
}

# (state, command, succeeded) -> new state.  Commands not listed keep the state.
# SELECT/EXAMINE that fails in the selected state closes the mailbox (§6.3.2).
TRANSITIONS: dict[tuple[State, str, bool], State] = {
    (NOT_AUTHENTICATED, "LOGIN", True): AUTHENTICATED,
    (NOT_AUTHENTICATED, "AUTHENTICATE", True): AUTHENTICATED,
    (AUTHENTICATED, "SELECT", True): SELECTED,
    (SELECTED, "SELECT", True): SELECTED,
    (SELECTED, "SELECT", False): AUTHENTICATED,
    (SELECTED, "CLOSE", True): AUTHENTICATED,
    (SELECTED, "UNSELECT", True): AUTHENTICATED,
    (AUTHENTICATED, "UNAUTHENTICATE", True): NOT_AUTHENTICATED,
    (SELECTED, "UNAUTHENTICATE", True): NOT_AUTHENTICATED,
    (NOT_AUTHENTICATED, "LOGOUT", True): LOGOUT,
    (AUTHENTICATED, "LOGOUT", True): LOGOUT,
    (SELECTED, "LOGOUT", True): LOGOUT,
}


# RFC 9051 §7.5.1: no EXPUNGE while responding to FETCH, STORE or SEARCH (the
# sequence numbers in those answers would shift under the client).  SORT and
# THREAD are searches too (RFC 5256).  The UID forms share the rule here:
# RFC 3501 exempted them, but keeping the sequence map still is always safe.
NO_EXPUNGE_DURING = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})


def allowed(state: State, command_name: str) -> bool:
    """May a command called ``command_name`` run in ``state``?"""
    return command_name in ALLOWED[state]


def refusal(state: State, command_name: str) -> str:
    """The text of the BAD answer to a command that ``allowed`` refused."""
    if state is NOT_AUTHENTICATED or state is LOGOUT:
        return f"{command_name} needs you to log in first"
    if command_name in NOT_AUTHENTICATED_ONLY:
        return "already authenticated"
    if command_name in AUTHENTICATED_ONLY:
        # RFC 5161 §3.1: ENABLE only before a mailbox is selected
        return f"{command_name} is not allowed once a mailbox is selected"
    return f"{command_name} needs a selected mailbox"


def next_state(state: State, command_name: str, ok: bool) -> State:
    """The state after ``command_name`` completed with OK (``ok``) or NO/BAD."""
    return TRANSITIONS.get((state, command_name, ok), state)


def may_announce_expunge(command_name: str) -> bool:
    """May the response to ``command_name`` carry EXPUNGE/VANISHED (RFC 9051 §7.5.1)?"""
    return command_name not in NO_EXPUNGE_DURING


# Transitions no command causes.  BYE: the server closes the connection
# (RFC 9051 §7.1.5).  Deselected: the session's selected mailbox went away
# under a command that does not select (DELETE of the selected mailbox).


def after_bye(state: State) -> State:
    return LOGOUT


def after_deselect(state: State) -> State:
    return AUTHENTICATED if state is SELECTED else state
