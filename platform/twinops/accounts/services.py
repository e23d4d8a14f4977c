"""Write accounts: create users in a role, change roles, issue (shown once), authenticate and revoke API tokens,
and audit logins, failed logins and lockouts."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import Group, User
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from twinops.accounts.models import ApiToken
from twinops.accounts.selectors import user_exists
from twinops.audit.services import audit_record
from twinops.core.actors import ActorLike
from twinops.core.roles import ROLES

TOKEN_PREFIX = "twk"


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_issue(
    *,
    user: Any,
    name: str,
    actor: ActorLike,
    lines: Sequence[str] = (),
    all_lines: bool = False,
    reason: str = "",
) -> tuple[ApiToken, str]:
    """Issue a token that may write these lines (keys), or every line; return the row and the plaintext (not stored).

    The caller checks that the lines exist (accounts knows no lines). Naming no line and not `all_lines` is an
    error: a token's reach is always chosen, never a default.
    """
    keys = sorted(set(lines))
    if all_lines and keys:
        raise ValueError("name lines or ask for all lines, not both")
    if not all_lines and not keys:
        raise ValueError("name the lines the token may write, or ask for all lines (site-wide)")
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            prefix=prefix,
            secret_sha256=_sha256(secret),
            created_at=timezone.now(),
            lines=keys,
            all_lines=all_lines,
        )
        audit_record(
            actor=actor,
            action="token.issued",
            obj=token,
            reason=reason,
            after={
                "user": user.get_username(),
                "name": name,
                "prefix": prefix,
                "lines": "all" if all_lines else keys,
            },
        )
    return token, f"{TOKEN_PREFIX}_{prefix}_{secret}"


def token_revoke(*, token: ApiToken, actor: ActorLike, reason: str) -> None:
    """Revoke a token so it no longer authenticates."""
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        audit_record(actor=actor, action="token.revoked", obj=token, reason=reason, before={"prefix": token.prefix})


def token_authenticate(*, header: str | None) -> Any | None:
    """Return the active user for an `Authorization: Bearer <token>` header, else None."""
    token = token_resolve(header=header)
    return None if token is None else token.user


def token_resolve(*, header: str | None) -> ApiToken | None:
    """Return the active token (with its user) of an `Authorization: Bearer <token>` header, else None."""
    if not header or not header.startswith("Bearer "):
        return None
    parts = header[len("Bearer ") :].strip().split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=parts[1], revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.secret_sha256, _sha256(parts[2])):
        return None
    if not token.user.is_active:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token


def user_create(
    *, username: str, role: str, password: str, actor: ActorLike, reason: str = "", validate: bool = True
) -> User:
    """Create a user in one role; the password must pass the configured validators unless `validate` is off."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if user_exists(username=username):
        raise ValueError(f"a user named {username!r} already exists")
    if validate:
        validate_password(password, User(username=username))
    with transaction.atomic():
        user = User.objects.create_user(username=username, password=password, is_staff=role == "admin")
        user.groups.add(Group.objects.get(name=role))
        audit_record(
            actor=actor, action="user.created", obj=user, reason=reason, after={"username": username, "role": role}
        )
    return user


def user_role_set(*, user: User, role: str, actor: ActorLike, reason: str) -> User:
    """Put a user in exactly one role (replacing the others); audited with the roles before and after."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not reason.strip():
        raise ValueError("a reason is required: say why this user's role changes")
    with transaction.atomic():
        locked = User.objects.select_for_update().get(pk=user.pk)
        before = sorted(locked.groups.values_list("name", flat=True))
        locked.groups.set([Group.objects.get(name=role)])
        locked.is_staff = role == "admin"
        locked.save(update_fields=["is_staff"])
        audit_record(
            actor=actor,
            action="user.role_changed",
            obj=locked,
            reason=reason,
            before={"username": locked.username, "roles": before},
            after={"username": locked.username, "roles": [role]},
        )
    return locked


# --- logins: Django's auth signals and core's lockout signal, audited (accounts/apps.py connects them) ---------------
ANONYMOUS = "anonymous"  # the actor of a failed login: whoever typed it is not known


def login_audit(*, user: User, client: str) -> None:
    """Audit a successful login."""
    with transaction.atomic():
        audit_record(actor=user, action="user.logged_in", obj=user, after={"username": user.username, "client": client})


def login_failure_audit(*, username: str, client: str, action: str = "user.login_failed") -> None:
    """Audit a failed login ("user.login_failed") or a lockout ("user.locked_out") for a username, known or not."""
    account = User.objects.filter(username=username).only("pk").first()
    with transaction.atomic():
        audit_record(
            actor=ANONYMOUS,
            action=action,
            object_type="auth.user",
            object_id="" if account is None else str(account.pk),
            after={"username": username, "client": client, "known_user": account is not None},
        )
