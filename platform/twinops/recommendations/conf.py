"""Settings of the recommendations app: Django settings, else the environment, else a default; bad values fail loudly."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from optimizer import MpcSettings
from twinops.config.env import setting_positive, setting_positive_int, setting_raw

PLAN_OOD_SHARE = 0.9  # the optimizer's limit on the OOD score along a plan, as a share of max_ood()


def ttl_s() -> float:
    """Return how long a pending recommendation stays valid before it expires, seconds."""
    return setting_positive("TWINOPS_RECOMMENDATION_TTL_S", 900.0)


def every_s() -> float:
    """Return the recommendation period (beat schedule and idempotency slot), seconds."""
    return setting_positive("TWINOPS_RECOMMEND_EVERY_S", 300.0)


def max_attempts() -> int:
    """Return how many workers may die computing one slot before that slot's recommendation is stored FAILED."""
    return setting_positive_int("TWINOPS_RECOMMEND_MAX_ATTEMPTS", 3)


def resend_after_s() -> float:
    """Return how long a slot sent again after its worker died may wait for a worker before it is sent once more."""
    return setting_positive("TWINOPS_RESEND_QUEUED_AFTER_S", 600.0)


def max_ood() -> float:
    """Return the largest twin OOD score accepted (1.0 = the 99th percentile of the training data)."""
    return setting_positive("TWINOPS_RECOMMEND_MAX_OOD", 3.0)


def max_spread() -> float:
    """Return the largest ensemble spread of a current CV accepted, in that CV's training standard deviations."""
    return setting_positive("TWINOPS_RECOMMEND_MAX_SPREAD", 0.5)


def mpc_overrides() -> dict[str, Any]:
    """Return the MpcSettings fields set by TWINOPS_MPC_SETTINGS (a dict, or JSON text in the environment)."""
    raw = setting_raw("TWINOPS_MPC_SETTINGS", "{}")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ImproperlyConfigured(f"TWINOPS_MPC_SETTINGS must be a JSON object: {exc}") from None
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"TWINOPS_MPC_SETTINGS must be a mapping of MpcSettings fields, not {raw!r}")
    known = {f.name for f in dataclasses.fields(MpcSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ImproperlyConfigured(f"TWINOPS_MPC_SETTINGS has unknown fields {unknown}; known: {sorted(known)}")
    return dict(raw)


def mpc_settings(*, twin_horizon: int) -> MpcSettings:
    """Return the optimizer settings; the horizon defaults to the twin's training rollout length (at most 30)."""
    overrides = mpc_overrides()
    overrides.setdefault("horizon", min(30, twin_horizon))
    # Plans are kept inside the twin's data (optimizer max_plan_ood) a little within the OOD score the recommender
    # accepts (max_ood), so a plan near the edge is not withheld for a hair.
    overrides.setdefault("max_plan_ood", PLAN_OOD_SHARE * max_ood())
    if "soft_penalty_by_rank" in overrides:
        overrides["soft_penalty_by_rank"] = tuple(overrides["soft_penalty_by_rank"])
    try:
        return MpcSettings(**overrides)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"TWINOPS_MPC_SETTINGS: {exc}") from None
