from django.urls import path

from twinops.web import views

urlpatterns = [
    path("", views.line_list, name="line-list"),
]
