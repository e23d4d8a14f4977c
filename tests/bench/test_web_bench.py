"""The web benchmark's quick run signs its users in on production gunicorn, serves every page without an error."""

from __future__ import annotations

import math

import pytest


@pytest.mark.slow  # trains a tiny twin, starts gunicorn, browses for ~20 s: under a minute
@pytest.mark.django_db(transaction=True)  # gunicorn reads the bench's scratch database on its own connections
def test_the_web_benchmark_serves_every_page_to_signed_in_users_without_errors() -> None:
    from bench import web

    out = web.run(quick=True)
    assert out["errors"] == 0, out["failed"]
    assert out["users"] == 5 and out["requests"] >= out["users"]
    assert out["samples_in_table"] >= 100_000
    for page in ("line_24h", "twin", "review", "recommendations"):
        assert math.isfinite(out[f"p95_ms_{page}"]) and math.isfinite(out[f"baseline_p95_ms_{page}"]), page
    assert out["p50_ms"] <= out["p95_ms"] and out["health_p95_ms_under_load"] > 0
