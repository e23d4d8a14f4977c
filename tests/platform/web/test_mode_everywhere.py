"""Every page of a line shows the line's mode, so nobody mistakes a shadow line for one that releases moves."""

from __future__ import annotations

import pytest
from django.test import Client

from twinops.accounts.services import user_create
from twinops.lines.services import line_mode_set
from twinops.onboarding.services import line_onboard

pytestmark = pytest.mark.django_db
SPEC = """\
schema_version: 1
line: {id: kiln, name: Kiln, sample_period_s: 10}
tags:
  - {name: T, role: CV, unit: degC, physical_range: [0, 2000]}
  - {name: F, role: MV, unit: kg/h, physical_range: [0, 100], limits: {low: 1, high: 90}}
objective:
  terms:
    - {tags: [F], price: 1.0, description: throughput}
"""


@pytest.mark.parametrize("path", ["/lines/kiln/", "/lines/kiln/versions/", "/twins/kiln/", "/recommendations/kiln/"])
def test_each_line_page_shows_the_mode(path: str) -> None:
    line = line_onboard(text=SPEC, filename="kiln.yaml", actor="system:test").line
    c = Client()
    c.force_login(user_create(username="eve", role="engineer", password="a-Long-password-1", actor="system:test"))
    assert "mode: shadow" in c.get(path).content.decode()
    line_mode_set(line=line, mode="advisory", actor="system:test", reason="commissioned")
    assert "mode: advisory" in c.get(path).content.decode()
