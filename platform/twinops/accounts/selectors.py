"""Read accounts: whether a user exists, API tokens (their metadata: the secrets are never stored)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from twinops.accounts.models import ApiToken


def user_exists(*, username: str) -> bool:
    """Tell whether a user with this username exists."""
    return User.objects.filter(username=username).exists()


def users_with_password(*, credentials: dict[str, str]) -> list[str]:
    """Return the usernames among `credentials` (username -> password) whose active account has that password."""
    users = User.objects.filter(username__in=list(credentials), is_active=True).order_by("username")
    return [u.username for u in users if u.check_password(credentials[u.username])]


def token_get(*, prefix: str) -> ApiToken | None:
    """Return the token with this prefix, or None."""
    return ApiToken.objects.filter(prefix=prefix).first()


def token_list() -> QuerySet[ApiToken]:
    """Return every token with its user, oldest first (revoked ones too)."""
    return ApiToken.objects.select_related("user").order_by("created_at")
