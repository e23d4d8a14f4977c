"""The registry: checkpoints live in PostgreSQL and are refused when damaged; promotion and rollback are audited."""

from __future__ import annotations

import numpy as np
import pytest

from twinops.audit.models import AuditEvent
from twinops.modeling import selectors, services
from twinops.modeling.models import TwinVersion
from twins import CheckpointError, CorruptCheckpointError, IncompatibleCheckpointError


def test_a_registered_version_loads_back_from_postgresql(line, register, trained) -> None:
    version = register(line)
    stored = TwinVersion.objects.get(pk=version.pk)  # bytes read back from the database, not the Python object
    twin = selectors.twin_load(version=stored)
    _, outcome = trained
    assert twin.config == outcome.twin.config and twin.cv_names == ("upper_level_m", "lower_level_m")
    assert np.array_equal(twin.norm.cv_mean, outcome.twin.norm.cv_mean)


def test_a_corrupt_checkpoint_in_the_registry_is_refused_with_the_reason(line, register) -> None:
    version = register(line, promotable=True)
    blob = bytearray(version.checkpoint)
    blob[-100] ^= 0xFF  # one flipped byte in the body
    TwinVersion.objects.filter(pk=version.pk).update(checkpoint=bytes(blob))
    version.refresh_from_db()
    with pytest.raises(CorruptCheckpointError, match="SHA-256 does not match") as caught:
        selectors.twin_load(version=version)
    assert "tanks twin v1" in str(caught.value)
    with pytest.raises(services.PromotionError, match="checkpoint is refused"):
        services.twin_promote(version=version, actor="system:test", reason="looks good")
    assert selectors.twin_promoted(line=line) is None


def test_a_checkpoint_of_another_schema_version_is_refused_as_incompatible(line, register) -> None:
    version = register(line)
    blob = bytes(version.checkpoint).replace(b'"schema_version": 1', b'"schema_version": 99', 1)
    TwinVersion.objects.filter(pk=version.pk).update(checkpoint=blob)
    version.refresh_from_db()
    with pytest.raises(IncompatibleCheckpointError, match="schema version 99"):
        selectors.twin_load(version=version)
    TwinVersion.objects.filter(pk=version.pk).update(checkpoint=b"")
    version.refresh_from_db()
    with pytest.raises(CheckpointError, match="no checkpoint"):
        selectors.twin_load(version=version)


def test_promotion_is_audited_and_only_the_promoted_version_feeds_the_optimizer(line, register, make_user) -> None:
    first, second = register(line, promotable=True), register(line, promotable=True)
    assert (first.version, second.version) == (1, 2)
    assert selectors.twin_promoted(line=line) is None  # trained is not promoted
    user = make_user("data")
    services.twin_promote(version=first, actor=user, reason="beats linear on the March data")
    assert selectors.twin_promoted(line=line) == first
    event = AuditEvent.objects.get(action="twin.promoted")
    assert (event.actor_label, event.reason, event.after["promoted_version"]) == (
        user.username,
        "beats linear on the March data",
        1,
    )
    services.twin_promote(version=second, actor=user, reason="newer data")
    assert selectors.twin_promoted(line=line) == second
    first.refresh_from_db()
    assert first.status == TwinVersion.Status.RETIRED
    assert TwinVersion.objects.filter(line=line, status=TwinVersion.Status.PROMOTED).count() == 1


def test_promoting_a_twin_that_does_not_beat_the_linear_baseline_is_refused(line, register) -> None:
    version = register(line, promotable=False)
    with pytest.raises(services.PromotionError, match="not promotable: .*does not beat the linear baseline"):
        services.twin_promote(version=version, actor="system:test", reason="try anyway")
    assert selectors.twin_promoted(line=line) is None
    assert not AuditEvent.objects.filter(action="twin.promoted").exists()


def test_promotion_needs_a_reason(line, register) -> None:
    version = register(line, promotable=True)
    with pytest.raises(services.PromotionError, match="reason is required"):
        services.twin_promote(version=version, actor="system:test", reason="  ")


def test_rollback_returns_the_previously_promoted_version(line, register) -> None:
    v1, v2, v3 = (register(line, promotable=True) for _ in range(3))
    for v in (v1, v2, v3):
        services.twin_promote(version=v, actor="system:test", reason=f"promote v{v.version}")
    back = services.twin_rollback(line=line, actor="system:test", reason="v3 oscillates")
    assert back == v2 and selectors.twin_promoted(line=line) == v2
    v3.refresh_from_db()
    assert v3.status == TwinVersion.Status.ROLLED_BACK
    event = AuditEvent.objects.get(action="twin.rolled_back")
    assert (event.reason, event.before, event.after) == (
        "v3 oscillates",
        {"promoted_version": 3},
        {"promoted_version": 2},
    )
    assert services.twin_rollback(line=line, actor="system:test", reason="v2 too") == v1
    with pytest.raises(services.PromotionError, match="nothing to return to"):
        services.twin_rollback(line=line, actor="system:test", reason="and again")
    assert selectors.twin_promoted(line=line) == v1
