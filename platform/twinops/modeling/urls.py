"""URLs of the twin pages: /twins/<line key>/…"""

from django.urls import path

from twinops.modeling import views

urlpatterns = [
    path("<slug:key>/", views.twin_page, name="twin-page"),
    path("<slug:key>/jobs/", views.twin_jobs, name="twin-jobs"),
    path("<slug:key>/train/", views.twin_train, name="twin-train"),
    path("<slug:key>/v<int:version>/promote/", views.twin_promote, name="twin-promote"),
    path("<slug:key>/rollback/", views.twin_rollback, name="twin-rollback"),
    path("<slug:key>/v<int:version>/report.json", views.twin_report_json, name="twin-report-json"),
]
