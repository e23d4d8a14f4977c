"""`twinops check --deploy` fails while a demo account still has its published password."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, ProgrammingError

from twinops.accounts.selectors import users_with_password
from twinops.demo.services import DEMO_USERS


@register(Tags.security, deploy=True)
def demo_accounts_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Report every demo account that can still sign in with the password printed in the README."""
    try:
        exposed = users_with_password(credentials=dict(DEMO_USERS.values()))
    except ProgrammingError:  # no accounts table yet (not migrated): no account at all
        return []
    except DatabaseError as exc:
        return [Warning(f"could not look for demo accounts with their published passwords: {exc}", id="twinops.W001")]
    return [
        Error(
            f"The demo account {name!r} still signs in with its published password (README, 'twinops up').",
            hint=f"Deactivate it or give it a new password (twinops changepassword {name}) before going to production.",
            id="twinops.E001",
        )
        for name in exposed
    ]
