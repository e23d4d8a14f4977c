"""Telemetry HTTP endpoints, mounted at /api/."""

from django.urls import path

from twinops.telemetry import views

urlpatterns = [
    path("lines/<slug:key>/samples", views.samples_post, name="telemetry-samples"),
    path("imports/<int:job_id>/rejections.csv", views.rejections_csv, name="telemetry-import-rejections"),
]
