"""URL map: one include per app."""

from django.urls import include, path

urlpatterns = [
    path("", include("twinops.core.urls")),
    path("", include("twinops.web.urls")),
    path("lines/", include("twinops.lines.urls")),
    path("api/", include("twinops.telemetry.urls")),
    path("twins/", include("twinops.modeling.urls")),
    path("recommendations/", include("twinops.recommendations.urls")),
    path("audit/", include("twinops.auditing.urls")),
]
