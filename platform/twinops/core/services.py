"""User and role services."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from twinops.audit.services import audit_record
from twinops.core.actors import ActorLike
from twinops.core.roles import ROLES

# Demo accounts for `twinops up` / `twinops demo` in development only; `twinops up` prints them.
DEMO_USERS: dict[str, tuple[str, str]] = {
    "engineer": ("engineer", "twinops-engineer"),
    "data": ("data", "twinops-data-team"),
    "auditor": ("auditor", "twinops-auditor"),
    "admin": ("admin", "twinops-admin"),
}


def user_create(*, username: str, role: str, password: str, actor: ActorLike, reason: str = "") -> User:
    """Create a user in one role, with a password that passes the configured validators."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if User.objects.filter(username=username).exists():
        raise ValueError(f"a user named {username!r} already exists")
    validate_password(password, User(username=username))
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password, is_staff=role == "admin")
        user.groups.add(Group.objects.get(name=role))
        audit_record(actor=actor, action="user.created", obj=user, reason=reason,
                     after={"username": username, "role": role})
    return user


def demo_users_seed() -> list[tuple[str, str, str]]:
    """Create the demo accounts if absent (development only); return (role, username, password) rows."""
    if getattr(settings, "PRODUCTION", False):
        raise RuntimeError("demo accounts are never created in production (TWINOPS_ENV=production)")
    rows = []
    for role, (username, password) in DEMO_USERS.items():
        if not User.objects.filter(username=username).exists():
            with transaction.atomic():
                user = User.objects.create_user(username=username, password=password, is_staff=role == "admin")
                user.groups.add(Group.objects.get(name=role))
                audit_record(actor="system:demo", action="user.created", obj=user, reason="demo account",
                             after={"username": username, "role": role})
        rows.append((role, username, password))
    return rows
