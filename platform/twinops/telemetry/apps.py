from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "twinops.telemetry"
    label = "telemetry"
