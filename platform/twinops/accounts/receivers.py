"""Audit logins: receivers of Django's auth signals and of core's lockout signal (connected in accounts/apps.py)."""

from __future__ import annotations

from typing import Any

from twinops.accounts.services import login_audit, login_failure_audit


def _client(request: Any) -> str:
    return "" if request is None else str(request.META.get("REMOTE_ADDR", ""))


def on_logged_in(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """Audit a successful login."""
    login_audit(user=user, client=_client(request))


def on_login_failed(sender: Any, credentials: dict[str, Any] | None = None, request: Any = None, **kwargs: Any) -> None:
    """Audit a failed login (Django has already scrubbed the password from `credentials`)."""
    login_failure_audit(username=str((credentials or {}).get("username") or ""), client=_client(request))


def on_locked_out(sender: Any, username: str = "", client: str = "", **kwargs: Any) -> None:
    """Audit the start of a lockout: the rate limit refuses this username from this client for a while."""
    login_failure_audit(username=username, client=client, action="user.locked_out")
