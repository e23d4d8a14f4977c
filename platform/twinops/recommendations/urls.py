"""URLs of the recommendation pages: /recommendations/<line key>/ and the line's KPIs, /recommendations/<line key>/kpis/"""

from django.urls import path

from twinops.recommendations import views

urlpatterns = [
    path("<slug:key>/", views.recommendation_page, name="recommendation-page"),
    path("<slug:key>/kpis/", views.kpi_page, name="recommendation-kpis"),
]
