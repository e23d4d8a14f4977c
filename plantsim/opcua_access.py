"""Who may do what on a PLC: operator accounts, request-level rules and a per-node write guard."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.server.address_space import AddressSpace, AttributeService

_WRITE_TYPES = {
    ua.NodeId(ua.Int32(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)),
    ua.NodeId(ua.Int32(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)),
}
_ALL_USER = {ua.NodeId(ua.Int32(i)) for i in USER_TYPES}

# Verdict of the write guard for one WriteValue: None lets the write through, a StatusCode refuses it.
WriteGuard = Callable[[User, ua.WriteValue], Awaitable[ua.StatusCode | None]]


class OperatorUserManager:
    """Username/password accounts (role User); anonymous sessions get the read-only Anonymous role."""

    def __init__(self, accounts: dict[str, str], *, allow_anonymous: bool = True) -> None:
        if not accounts or any(not u or not p for u, p in accounts.items()):
            raise ValueError("at least one operator account with a non-empty username and password is required")
        self._digests = {u: hashlib.sha256(p.encode()).digest() for u, p in accounts.items()}
        self._allow_anonymous = allow_anonymous

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        """Return the session's user, or None to refuse the session (BadUserAccessDenied)."""
        if username is None:
            return User(role=UserRole.Anonymous) if self._allow_anonymous else None
        expected = self._digests.get(username)
        given = hashlib.sha256((password or "").encode()).digest()
        if expected is None or not hmac.compare_digest(expected, given):
            return None
        return User(role=UserRole.User, name=username)


class PlcRuleset(PermissionRuleset):
    """Operators may use every session service; anonymous sessions may read, browse and subscribe only."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        """Return whether this user may send this request type."""
        if user.role in (UserRole.Admin, UserRole.User):
            return action_type_id in _ALL_USER
        return action_type_id in _ALL_USER and action_type_id not in _WRITE_TYPES


class DiscoveryOnlyRuleset(PermissionRuleset):
    """Rules of an unsecured channel when security None is not offered: discovery only, no session services."""

    def check_validity(self, user: User, action_type_id: ua.NodeId, body: Any) -> bool:
        """Refuse every session service (discovery requests never reach this check)."""
        return False


class GuardedAttributeService(AttributeService):
    """Attribute service that asks a guard about every remote write before the address space is touched."""

    def __init__(self, aspace: AddressSpace, guard: WriteGuard) -> None:
        super().__init__(aspace)
        self._guard = guard

    async def write(self, params: ua.WriteParameters, user: User = User(role=UserRole.Admin)) -> list[ua.StatusCode]:  # noqa: B008
        """Write each value the guard lets through; return one status per value."""
        results: list[ua.StatusCode] = []
        for item in params.NodesToWrite:
            refusal = await self._guard(user, item) if user.role != UserRole.Admin else None
            if refusal is not None:
                results.append(refusal)
                continue
            results.extend(await super().write(ua.WriteParameters(NodesToWrite=[item]), user=user))
        return results
