from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "twinops.demo"
    label = "demo"
