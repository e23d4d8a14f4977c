"""URLs of the recommendation pages: /recommendations/<line key>/"""

from django.urls import path

from twinops.recommendations import views

urlpatterns = [
    path("<slug:key>/", views.recommendation_page, name="recommendation-page"),
]
