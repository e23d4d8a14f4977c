"""From a line's page a plant engineer reaches its twin and its recommendations, and back."""

import pytest
from django.test import Client


@pytest.fixture
def line(db):
    from django.utils import timezone

    from twinops.lines.models import Line

    return Line.objects.create(key="links-line", name="Links line", sample_period_s=60, created_at=timezone.now())


@pytest.mark.django_db
def test_the_line_page_links_to_its_twin_and_recommendations_and_they_link_back(
    client: Client, make_user, line
) -> None:
    client.force_login(make_user("engineer"))
    page = client.get(f"/lines/{line.key}/").content.decode()
    assert f'href="/twins/{line.key}/"' in page
    assert f'href="/recommendations/{line.key}/"' in page
    for url in (f"/twins/{line.key}/", f"/recommendations/{line.key}/"):
        response = client.get(url)
        assert response.status_code == 200
        assert f'href="/lines/{line.key}/"' in response.content.decode()
