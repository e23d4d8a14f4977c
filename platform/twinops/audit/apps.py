from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "twinops.audit"
    label = "audit"
