"""Roles are Django groups; what each may do is a capability (a permission on `core.Capability`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied

from twinops.core.actors import Actor
from twinops.core.capabilities import CAPABILITIES

ROLES: dict[str, set[str]] = {
    "engineer": {"view_plant", "approve_proposal"},
    "data": {"view_plant", "onboard_line", "import_telemetry", "train_twin"},
    "auditor": {"view_plant", "view_audit", "export_audit"},
    "admin": set(CAPABILITIES),
}


def roles_sync() -> None:
    """Create the role groups and give each exactly its capabilities (idempotent; runs after migrate)."""
    perms = {
        p.codename: p for p in Permission.objects.filter(content_type__app_label="core", codename__in=CAPABILITIES)
    }
    for role, caps in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([perms[c] for c in caps if c in perms])


def user_can(user: Any, capability: str) -> bool:
    """Tell whether a user holds a capability."""
    if capability not in CAPABILITIES:
        raise ValueError(f"unknown capability {capability!r}")
    return bool(user and user.is_authenticated and user.is_active and user.has_perm(f"core.{capability}"))


def capability_require(*, actor: Actor, capability: str) -> None:
    """Raise PermissionDenied unless a person holds the capability; a system component is trusted (CLI, tasks)."""
    if actor.person and not user_can(actor.user, capability):
        raise PermissionDenied(f"{actor.label or 'anonymous'} may not {CAPABILITIES[capability].lower()}")


def require_capability(capability: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Refuse a view (403) unless the logged-in user holds the capability."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
            if not user_can(request.user, capability):
                raise PermissionDenied(f"This needs the permission to: {CAPABILITIES[capability].lower()}.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
