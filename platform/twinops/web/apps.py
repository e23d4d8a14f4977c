from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "twinops.web"
    label = "web"
