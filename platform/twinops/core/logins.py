"""Failed password attempts, counted per (username, client address) in the cache, for logins and signatures alike."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache


def _key(username: str, client: str) -> str:
    return "login-fail:" + hashlib.sha256(f"{username.strip().lower()}|{client}".encode()).hexdigest()


def login_locked(*, username: str, client: str) -> bool:
    """Tell whether too many passwords for this username from this client failed within the window."""
    return int(cache.get(_key(username, client)) or 0) >= settings.LOGIN_RATE_LIMIT


def login_failure_record(*, username: str, client: str) -> None:
    """Count one failed password (a login or a signature) for this username from this client."""
    key = _key(username, client)
    try:
        cache.incr(key)
    except ValueError:
        cache.set(key, 1, timeout=settings.LOGIN_RATE_WINDOW_S)


def login_failures_clear(*, username: str, client: str) -> None:
    """Forget the failures after a successful login."""
    cache.delete(_key(username, client))


def lockout_minutes() -> int:
    """Return how long a lockout lasts, in whole minutes, for messages."""
    return max(1, settings.LOGIN_RATE_WINDOW_S // 60)
