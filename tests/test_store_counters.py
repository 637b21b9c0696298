"""Every per-account counter kind in store/keys.py is distinct.

Counters live in one table keyed by (account, kind); two features that
picked the same kind number would silently share a counter (an upload byte
count read as the last push subscription id).  Branches that add counters
in parallel are exactly how that happens, so it is checked here.
"""
from mailaccess.store import keys


def test_counter_kinds_are_unique():
    kinds = {name: getattr(keys, name) for name in dir(keys) if name.startswith("CTR_")}
    assert kinds, "no counters found"
    seen: dict[int, str] = {}
    for name, value in sorted(kinds.items()):
        assert isinstance(value, int) and 0 < value < 256, name
        assert value not in seen, f"{name} and {seen[value]} share counter kind {value}"
        seen[value] = name
