"""mailaccess.vocab: one table of keywords and roles, and every layer reads it."""
import ast
import pathlib

import pytest

from mailaccess import exporter, importer, vocab
from mailaccess.proto.imap import commands, grammar
from mailaccess.server import imap_fmt
from mailaccess.store import ops


def test_vocab_imports_nothing_of_the_project():
    tree = ast.parse(pathlib.Path(vocab.__file__).read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "vocab imports nothing relative"
            mods.add(node.module)
    assert mods <= {"__future__", "dataclasses"}


def test_keywords_are_jmap_form_and_unique():
    seen = set()
    for k in vocab.KEYWORDS:
        assert k.keyword.startswith("$") and k.keyword == k.keyword.lower()
        assert k.keyword not in seen
        seen.add(k.keyword)
    # RFC 8621 4.1.1 and the IANA keyword registry
    assert {"$seen", "$flagged", "$answered", "$draft", "$forwarded", "$junk", "$notjunk",
            "$phishing"} <= seen


@pytest.mark.parametrize("keyword,flag,activesync", [
    ("$seen", "\\Seen", "Read"),
    ("$flagged", "\\Flagged", "Flag"),
    ("$answered", "\\Answered", "LastVerbExecuted"),
    ("$draft", "\\Draft", None),
    ("$deleted", "\\Deleted", None),
])
def test_one_row_per_keyword_across_protocols(keyword, flag, activesync):
    row = vocab.BY_KEYWORD[keyword]
    assert row.imap_flag == flag
    if activesync:
        assert row.activesync.startswith(activesync)
    assert vocab.IMAP_FLAG_TO_KEYWORD[flag.lower()] == keyword


def test_system_keywords_are_exactly_the_imap_system_flags():
    assert vocab.SYSTEM_KEYWORDS == {"$seen", "$answered", "$flagged", "$draft", "$deleted"}
    assert ops.SYSTEM_KEYWORDS is vocab.SYSTEM_KEYWORDS
    assert list(vocab.KEYWORD_TO_IMAP_FLAG.values()) == [
        "\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"]


def test_imap_layer_builds_from_the_vocabulary():
    for kw, flag in vocab.KEYWORD_TO_IMAP_FLAG.items():
        assert imap_fmt.flag_of(kw) == flag
        assert imap_fmt.keyword_of(flag) == kw
        assert imap_fmt.keyword_of(flag.upper()) == kw
        assert grammar.canonical_flag(flag.lower().encode()) == flag
    assert imap_fmt.keyword_of("\\Recent") is None
    assert imap_fmt.keyword_of("$Forwarded") == "$Forwarded"   # spelling kept for the store
    for role, su in vocab.ROLE_TO_SPECIAL_USE.items():
        assert imap_fmt.SPECIAL_USE_TO_ROLE[su.lower()] == role
        assert commands.SPECIAL_USES[su.lower()] == su


def test_roles_and_activesync_folder_types():
    # MS-ASCMD 2.2.3.186.3
    assert vocab.activesync_folder_type("inbox") == 2
    assert vocab.activesync_folder_type("drafts") == 3
    assert vocab.activesync_folder_type("trash") == 4
    assert vocab.activesync_folder_type("sent") == 5
    assert vocab.activesync_folder_type("junk") == 12
    assert vocab.activesync_folder_type(None) == 12
    assert vocab.activesync_folder_type("nonsense") == 12
    for r in vocab.ROLES:
        assert r.role == r.role.lower()
        if r.special_use:
            assert r.special_use[1:].lower() == r.role   # RFC 8621 2: role = attribute
    assert vocab.ROLE_TO_SPECIAL_USE["important"] == "\\Important"   # RFC 8457
    assert "inbox" not in vocab.ROLE_TO_SPECIAL_USE                   # INBOX is a name
    assert vocab.DEFAULT_MAILBOXES[0] == ("INBOX", "inbox")
    assert ops.DEFAULT_MAILBOXES == vocab.DEFAULT_MAILBOXES


def test_maildir_letters():
    assert vocab.MAILDIR_LETTER_TO_KEYWORD == {
        "D": "$draft", "F": "$flagged", "P": "$forwarded", "R": "$answered", "S": "$seen",
        "T": "$deleted"}
    assert importer.LETTER_FLAGS is vocab.MAILDIR_LETTER_TO_KEYWORD
    assert exporter.FLAG_LETTERS is vocab.KEYWORD_TO_MAILDIR_LETTER
    assert importer.parse_maildir_flags("1.x:2,FSa", {"a": "Work"}, False) == (
        "$flagged", "$seen", "work")


def test_importer_special_names_map_to_vocabulary_roles():
    assert set(importer.SPECIAL_NAMES.values()) <= set(vocab.BY_ROLE)
    assert importer.SPECIAL_NAMES["deleted items"] == vocab.ROLE_TRASH
    assert importer.SPECIAL_NAMES["spam"] == vocab.ROLE_JUNK
