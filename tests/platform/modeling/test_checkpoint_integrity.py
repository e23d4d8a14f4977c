"""A version's checkpoint is loaded only while its bytes hash to the SHA-256 recorded when it was registered."""

from __future__ import annotations

import pytest
import torch

from twinops.modeling import services
from twinops.modeling.models import TwinVersion
from twinops.modeling.selectors import checkpoint_bytes, checkpoint_twin, twin_load
from twins import CheckpointError


def _another_valid_checkpoint(version: TwinVersion) -> bytes:
    """Return a well-formed checkpoint of a different twin: the registered one with every weight nudged."""
    twin = checkpoint_twin(bytes(version.checkpoint), label="copy")
    with torch.no_grad():
        for weight in twin.net.parameters():
            weight.add_(0.01)
    data = checkpoint_bytes(twin)
    checkpoint_twin(data, label="swapped")  # loads on its own: only its hash can give it away
    return data


def test_a_registered_checkpoint_loads(line, register) -> None:
    version = register(line, promotable=True)
    assert twin_load(version=version).cv_names  # the audited bytes load


def test_a_swapped_checkpoint_is_refused_and_cannot_be_promoted(line, register) -> None:
    version = register(line, promotable=True)
    TwinVersion.objects.filter(pk=version.pk).update(checkpoint=_another_valid_checkpoint(version))
    version.refresh_from_db()
    with pytest.raises(CheckpointError, match="does not match the SHA-256 recorded when it was registered"):
        twin_load(version=version)
    with pytest.raises(services.PromotionError, match="checkpoint is refused"):
        services.twin_promote(version=version, actor="system:test", reason="tests")
    version.refresh_from_db()
    assert version.status == "candidate"
