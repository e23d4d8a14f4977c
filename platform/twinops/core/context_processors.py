"""Template context: what the current user may do, for showing or hiding controls (checks stay server-side)."""

from typing import Any

from twinops.core.roles import CAPABILITIES, user_can


def roles(request: Any) -> dict[str, Any]:
    """Expose `can.<capability>` booleans to templates."""
    user = getattr(request, "user", None)
    return {"can": {c: user_can(user, c) for c in CAPABILITIES} if user is not None else {}}
