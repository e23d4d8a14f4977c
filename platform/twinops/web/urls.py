"""Dashboard URLs: pages, and the partials htmx swaps into them."""

from django.urls import path

from twinops.web import views

urlpatterns = [
    path("", views.line_list, name="line-list"),
    path("onboard/", views.onboard_start, name="line-onboard"),
    path("onboard/preview/", views.onboard_preview, name="line-onboard-preview"),
    path("onboard/confirm/", views.onboard_confirm, name="line-onboard-confirm"),
    path("imports/<int:job_id>/", views.import_detail, name="import-detail"),
    path("imports/<int:job_id>/progress/", views.import_progress, name="import-progress"),
    path("lines/<slug:key>/", views.line_detail, name="line-detail"),
    path("lines/<slug:key>/chart/", views.line_chart, name="line-chart"),
    path("lines/<slug:key>/versions/", views.line_versions, name="line-versions"),
    path("lines/<slug:key>/mode/", views.line_mode, name="line-mode"),
    path("lines/<slug:key>/proposals/<int:rec_id>/", views.proposal_review, name="proposal-review"),
    path("lines/<slug:key>/proposals/<int:rec_id>/sign/", views.proposal_signature, name="proposal-sign"),
    path("lines/<slug:key>/proposals/<int:rec_id>/release/", views.proposal_release, name="proposal-release"),
    path("lines/<slug:key>/proposals/<int:rec_id>/release/stop/", views.release_stop_view, name="release-stop"),
]
