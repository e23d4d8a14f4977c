"""Who does something: a person's account or a named system component, as services and audit events see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from django.contrib.auth import get_user_model

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

SYSTEM = "system"  # the label of an actor nobody named


@dataclass(frozen=True)
class Actor:
    """A person (signed in or anonymous) or a trusted system component such as "system:beat" or "cli:root"."""

    label: str  # kept on audit events: the username, the component's name, "" for an anonymous visitor
    user: AbstractBaseUser | None = None  # the saved account of a person; None for a component or a visitor
    person: bool = False  # False: a system component, trusted by services (the CLI, tasks, the collector)

    @classmethod
    def of(cls, who: ActorLike) -> Actor:
        """Return the actor for a request user, a user row, a component name, or None (labelled "system")."""
        if isinstance(who, Actor):
            return who
        if who is None or isinstance(who, str):
            return cls(label=who or SYSTEM)
        if hasattr(who, "get_username"):
            return cls(label=who.get_username(), user=who if who.pk else None, person=True)
        raise TypeError(f"an actor is a user, a component name or None, not {type(who).__name__}")

    @classmethod
    def from_username(cls, username: str) -> Actor:
        """Return the actor for an account by username; raise LookupError naming it when there is none."""
        users = get_user_model().objects
        try:
            return cls.of(users.get_by_natural_key(username))
        except users.model.DoesNotExist:
            raise LookupError(f"no user named {username!r}") from None

    def __str__(self) -> str:
        return self.label


ActorLike: TypeAlias = "Actor | AbstractBaseUser | AnonymousUser | str | None"  # what services accept as `actor`
