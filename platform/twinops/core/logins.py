"""Password attempts, counted per (username, client address) in the cache, for logins and signatures alike.

An attempt is counted (atomically, in Redis) before the password is checked and forgotten when it was right, so
parallel guesses each take a place in the count and no more than the limit are ever checked in a window. Usernames
count as Django authenticates them (NFKC, the user model's normalisation) and case-folded, so `ａｄｍｉｎ`, `Admin`
and `admin` share one count.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.dispatch import Signal
from redis.exceptions import RedisError

# Sent by the login view when the rate limit starts refusing a username from a client (once per lockout window),
# with `username` and `client`; the accounts app audits it (core sits below the audit log).
login_locked_out = Signal()


log = logging.getLogger(__name__)
STORE_DOWN = "Sign-in is unavailable: the rate limiter's store is down; try again shortly."


class RateLimiterUnavailable(RuntimeError):
    """The cache that counts attempts (Redis) cannot be reached: refuse the attempt rather than not count it."""


def username_normalised(username: str) -> str:
    """Return the username as authentication sees it (NFKC, the user model's normalisation), stripped, case-folded."""
    text = unicodedata.normalize("NFKC", username)
    return str(get_user_model().normalize_username(text)).strip().casefold()


def _key(username: str, client: str) -> str:
    return "login-fail:" + hashlib.sha256(f"{username_normalised(username)}|{client}".encode()).hexdigest()


def login_attempt_begin(*, username: str, client: str) -> bool:
    """Count an attempt before its password is checked; tell whether it is within the limit (else refuse it).

    Raise RateLimiterUnavailable when the count cannot be kept.
    """
    key, window = _key(username, client), settings.LOGIN_RATE_WINDOW_S
    try:
        cache.add(key, 0, timeout=window)  # the window starts with the first attempt
        try:
            count = int(cache.incr(key))
        except ValueError:  # the window ended between the two calls
            cache.add(key, 0, timeout=window)
            count = int(cache.incr(key))
        if count == 1:
            cache.touch(key, timeout=window)  # an INCR that re-created an expired key left it without expiry
    except (RedisError, OSError) as exc:
        raise RateLimiterUnavailable(STORE_DOWN) from exc
    return count <= settings.LOGIN_RATE_LIMIT


def login_failures_clear(*, username: str, client: str) -> None:
    """Forget the attempts after a right password; a store that went down meanwhile only leaves them to expire."""
    try:
        cache.delete(_key(username, client))
    except (RedisError, OSError):
        log.warning("could not clear the login attempts of %r: the cache is down", username)


def lockout_started(*, username: str, client: str) -> bool:
    """Tell whether this refusal is the lockout's first (once per window), so it is reported once, not per attempt."""
    return bool(cache.add("lockout:" + _key(username, client), 1, timeout=settings.LOGIN_RATE_WINDOW_S))


def lockout_minutes() -> int:
    """Return how long a lockout lasts, in whole minutes, for messages."""
    return max(1, settings.LOGIN_RATE_WINDOW_S // 60)
