from django.urls import path

from twinops.auditing import views

urlpatterns = [
    path("", views.event_log, name="audit-log"),
    path("events/<int:event_id>/", views.event_detail, name="audit-event"),
    path("proposals/<int:recommendation_id>/", views.decision_chain, name="audit-decision"),
    path("export/", views.export, name="audit-export"),
]
