"""Test-wide fixtures: users in each role. The database is the real embedded PostgreSQL (see config/embedded.py).

The suite runs on a TWINOPS_HOME of its own (`./.twinops-test` with TWINOPS_ENV=test, as `scripts/test` sets it),
never on the demo's `./.twinops`; the embedded servers it starts stop when the test process exits (embedded.py
releases them even while broker and cache connections are still open).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from twinops.config.embedded import PROJECT_ROOT, data_home


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to run on the demo's data home: its servers and data are not the tests' to touch."""
    if data_home() == (PROJECT_ROOT / ".twinops").resolve():
        raise pytest.UsageError(
            "the tests would share ./.twinops with the demo: run them with TWINOPS_ENV=test (scripts/test does) "
            "or give them a TWINOPS_HOME of their own"
        )


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    """Create a user in the given role (engineer, data, auditor, admin) with a known password."""
    from django.contrib.auth.models import Group, User

    def make(role: str, username: str | None = None, password: str = "correct-horse-battery") -> Any:
        user = User.objects.create_user(username=username or f"{role}-user", password=password)
        user.groups.add(Group.objects.get(name=role))
        return user

    return make
