"""Who may do what on a PLC: accounts, trusted client certificates, throttled logins, request rules, a write guard."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions
from asyncua.server.address_space import AddressSpace, AttributeService
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

_WRITE_TYPES = {
    ua.NodeId(ua.Int32(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary)),
    ua.NodeId(ua.Int32(ua.ObjectIds.CallRequest_Encoding_DefaultBinary)),
}
_ALL_USER = {ua.NodeId(ua.Int32(i)) for i in USER_TYPES}

# Verdict of the write guard for one WriteValue: None lets the write through, a StatusCode refuses it.
WriteGuard = Callable[[User, ua.WriteValue], Awaitable[ua.StatusCode | None]]


_log = logging.getLogger(__name__)
# Refusals that count as a failed login for the throttle (a wrong or unknown account, a token that does not decrypt).
_LOGIN_FAILURES = {
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
}


class OperatorUserManager(UserManager):
    """Username/password accounts: operators (role User) may write, readers may only read, browse and subscribe.

    asyncua has no read-only role: a reader gets the Anonymous role's rights, under its own name.
    """

    def __init__(
        self, accounts: dict[str, str], *, readers: dict[str, str] | None = None, allow_anonymous: bool = False
    ) -> None:
        readers = readers or {}
        if not accounts or any(not u or not p for u, p in {**accounts, **readers}.items()):
            raise ValueError("at least one operator account with a non-empty username and password is required")
        if set(accounts) & set(readers):
            raise ValueError(f"an account cannot be both operator and reader: {sorted(set(accounts) & set(readers))}")
        self._digests = {u: hashlib.sha256(p.encode()).digest() for u, p in {**accounts, **readers}.items()}
        self._readers = set(readers)
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
        return User(role=UserRole.Anonymous if username in self._readers else UserRole.User, name=username)


class ClientTrustList:
    """The client certificates (DER) allowed to open a secured session; every other certificate is refused."""

    def __init__(self, certificates: Iterable[bytes]) -> None:
        self._fingerprints = {hashlib.sha256(der).digest() for der in certificates}
        # time range and application URI, as asyncua checks them; trust is decided by the list, not a CA
        self._basic = CertificateValidator(
            CertificateValidatorOptions.BASIC_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
        )

    def __len__(self) -> int:
        return len(self._fingerprints)

    def trusts(self, der: bytes) -> bool:
        """Return whether this DER certificate is on the list."""
        return hashlib.sha256(der).digest() in self._fingerprints

    async def validate(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        """Refuse CreateSession with BadCertificateUntrusted unless the certificate is on the list (and valid)."""
        if not self.trusts(cert.public_bytes(Encoding.DER)):
            _log.warning("refused a session: client certificate %s is not trusted", cert.subject.rfc4514_string())
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        await self._basic.validate(cert, app)


class LoginThrottle:
    """After `free_failures` failed logins from one source, refuse its logins for a wait that doubles each failure.

    While it waits, no password from that source is even checked, so guessing goes no faster than the waits allow.
    A successful login clears the source's count.
    """

    def __init__(
        self,
        *,
        free_failures: int = 3,
        delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 10_000,
    ) -> None:
        self.free_failures, self.delay_s, self.max_delay_s = free_failures, delay_s, max_delay_s
        self._clock = clock
        self._max_sources = max_sources
        self._state: dict[str, tuple[int, float]] = {}  # source -> (failures, refused until: clock s)

    def wait_s(self, source: str) -> float:
        """Return how long logins from this source are still refused (0: a login is checked now)."""
        return max(0.0, self._state.get(source, (0, 0.0))[1] - self._clock())

    def failed(self, source: str) -> float:
        """Count a failed login from this source; return the wait it now has to sit out."""
        failures = self._state.get(source, (0, 0.0))[0] + 1
        extra = failures - self.free_failures
        delay = min(self.max_delay_s, self.delay_s * 2 ** (extra - 1)) if extra > 0 else 0.0
        if len(self._state) >= self._max_sources and source not in self._state:
            self._state.pop(next(iter(self._state)))  # forget the oldest source rather than grow without bound
        self._state[source] = (failures, self._clock() + delay)
        return delay

    def succeeded(self, source: str) -> None:
        """Forget the source's failures."""
        self._state.pop(source, None)


class _GuardedSession(InternalSession):
    """A session whose activation is throttled per source address and needs a trusted channel certificate."""

    iserver: GuardedInternalServer

    def activate_session(
        self, params: ua.ActivateSessionParameters, peer_certificate: bytes | None
    ) -> ua.ActivateSessionResult:
        """Activate unless the source must wait or the channel's certificate is untrusted; count failures."""
        source = _source(self.name)
        throttle, trust = self.iserver.login_throttle, self.iserver.client_trust
        # CreateSession may omit the client certificate: the secure channel's own certificate is checked here too
        if peer_certificate and trust is not None and not trust.trusts(peer_certificate):  # b'': security None
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)
        wait = throttle.wait_s(source)
        if wait > 0:
            _log.warning("refused a login from %s unchecked: %.1f s left to wait after failed logins", source, wait)
            raise ServiceError(ua.StatusCodes.BadUserAccessDenied)
        try:
            result = super().activate_session(params, peer_certificate)
        except ServiceError as e:
            if e.code in _LOGIN_FAILURES:
                delay = throttle.failed(source)
                if delay:
                    _log.warning("failed login from %s: its next login is checked in %.1f s", source, delay)
            raise
        throttle.succeeded(source)
        return result


class GuardedInternalServer(InternalServer):
    """asyncua's internal server whose sessions are throttled and checked against the client trust list."""

    def __init__(
        self, *, user_manager: UserManager, login_throttle: LoginThrottle, client_trust: ClientTrustList | None
    ) -> None:
        super().__init__(user_manager=user_manager)
        self.login_throttle = login_throttle
        self.client_trust = client_trust
        if client_trust is not None:
            self.certificate_validator = client_trust.validate

    def create_session(
        self,
        name: str,
        user: User = User(role=UserRole.Anonymous),  # noqa: B008  asyncua's own signature
        external: bool = False,
    ) -> InternalSession:
        """Return a guarded session."""
        return _GuardedSession(self, self.aspace, self.subscription_service, name, user=user, external=external)


def _source(peer: Any) -> str:
    """Return the client's address (without its port) from asyncua's peer name."""
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


class PlcRuleset(PermissionRuleset):
    """Operators may use every session service; readers and anonymous sessions may read, browse and subscribe only."""

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


def transfer_rebinding(server: Any) -> None:
    """Make TransferSubscriptions hand a subscription's publishing to the new session, requests as well as responses.

    asyncua 2.1.0's server points a transferred subscription's responses at the new connection but keeps taking the
    publish requests to answer from the old one (dead, for a client that was killed), so after the first response
    nothing is published again. OPC UA (Part 4, 5.13.7) moves the subscription whole; this makes it so.
    """
    service = server.iserver.subscription_service
    transfer = service.transfer_subscriptions

    async def transfer_whole(params: ua.TransferSubscriptionsParameters, session_id: Any, callback: Any) -> Any:
        results = await transfer(params, session_id, callback)
        processor = getattr(callback, "__self__", None)  # the new connection's UaProcessor
        for sub_id, result in zip(params.SubscriptionIds, results, strict=True):
            sub = service.subscriptions.get(int(sub_id))
            if sub is not None and result.StatusCode.is_good() and processor is not None:
                sub.pub_request_callback = processor.get_publish_request
        return results

    service.transfer_subscriptions = transfer_whole
