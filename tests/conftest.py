"""Test-wide fixtures: users in each role. The database is the real embedded PostgreSQL (see config/embedded.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def make_user(db: None) -> Callable[..., Any]:
    """Create a user in the given role (engineer, data, auditor, admin) with a known password."""
    from django.contrib.auth.models import Group, User

    def make(role: str, username: str | None = None, password: str = "correct-horse-battery") -> Any:
        user = User.objects.create_user(username=username or f"{role}-user", password=password)
        user.groups.add(Group.objects.get(name=role))
        return user

    return make
