"""A checkpoint is loaded only if it is the one registered (and audited): a swapped one fails the recommendation."""

from __future__ import annotations

from typing import Any

import torch

from twinops.modeling.models import TwinVersion
from twinops.modeling.selectors import checkpoint_bytes, checkpoint_twin, twin_promoted
from twinops.recommendations.services import recommendation_create


def _another_valid_checkpoint(version: TwinVersion) -> bytes:
    """Return a well-formed checkpoint of a different twin: the registered one with every weight nudged."""
    twin = checkpoint_twin(bytes(version.checkpoint), label="copy")
    with torch.no_grad():
        for weight in twin.net.parameters():
            weight.add_(0.01)
    data = checkpoint_bytes(twin)
    assert data != bytes(version.checkpoint)
    checkpoint_twin(data, label="swapped")  # loads on its own: only its hash can give it away
    return data


def test_a_swapped_checkpoint_fails_the_recommendation_naming_the_mismatch(ready: Any) -> None:
    line, now = ready
    version = twin_promoted(line=line)
    TwinVersion.objects.filter(pk=version.pk).update(checkpoint=_another_valid_checkpoint(version))
    rec = recommendation_create(line=line, actor="system:beat", now=now)
    assert rec.status == "failed" and not rec.has_proposal and rec.result is None
    assert rec.reason.startswith("twin v1 cannot be loaded: the stored checkpoint of")
    assert "does not match the SHA-256 recorded when it was registered" in rec.reason
    assert version.checkpoint_sha256[:16] in rec.reason


def test_the_registered_checkpoint_still_gives_a_proposal(ready: Any) -> None:
    line, now = ready
    rec = recommendation_create(line=line, actor="system:beat", now=now)
    assert rec.status == "pending" and rec.has_proposal
