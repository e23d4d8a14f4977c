"""Advisory lock keys live in one module, and no two uses share a key."""

from __future__ import annotations

from twinops.core import locks


def test_every_advisory_lock_key_is_distinct_and_in_the_projects_range() -> None:
    keys = {name: value for name, value in vars(locks).items() if name.isupper()}
    assert len(set(keys.values())) == len(keys) >= 3
    assert all(7_240_000 <= key < 7_241_000 for key in keys.values())
