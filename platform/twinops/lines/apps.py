from django.apps import AppConfig


class LinesConfig(AppConfig):
    name = "twinops.lines"
    label = "lines"
