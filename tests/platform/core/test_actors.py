"""One actor type: audit labels of people and system components, and where the account is kept."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import transaction

from twinops.audit.services import audit_record
from twinops.core.actors import Actor


@pytest.mark.django_db
def test_a_user_acts_under_their_username_with_their_account(make_user) -> None:
    dana = make_user("data", username="dana")
    actor = Actor.of(dana)
    assert (actor.label, actor.user, actor.person) == ("dana", dana, True)
    assert Actor.of(actor) is actor


def test_a_component_acts_under_its_name_and_no_one_acts_as_system() -> None:
    assert Actor.of("system:beat") == Actor(label="system:beat", user=None, person=False)
    assert Actor.of(None).label == Actor.of("").label == "system"
    assert str(Actor.of("cli:root")) == "cli:root"


def test_an_anonymous_visitor_is_a_person_without_an_account() -> None:
    actor = Actor.of(AnonymousUser())
    assert (actor.label, actor.user, actor.person) == ("", None, True)


def test_anything_else_is_refused_as_an_actor() -> None:
    with pytest.raises(TypeError, match="not int"):
        Actor.of(42)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_an_unknown_username_is_refused_by_name() -> None:
    with pytest.raises(LookupError, match="no user named 'ghost'"):
        Actor.from_username("ghost")


@pytest.mark.django_db
def test_audit_events_keep_the_same_label_whichever_way_the_actor_is_given(make_user) -> None:
    erin = make_user("engineer", username="erin")
    with transaction.atomic():
        events = [
            audit_record(actor=a, action="test.done", object_type="x", object_id="1")
            for a in (erin, Actor.of(erin), "system:beat", None)
        ]
    assert [(e.actor_id, e.actor_label) for e in events] == [
        (erin.pk, "erin"),
        (erin.pk, "erin"),
        (None, "system:beat"),
        (None, "system"),
    ]
