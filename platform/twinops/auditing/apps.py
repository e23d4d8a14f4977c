"""The auditing app: the auditor's pages (event log, event detail, decision chain per proposal) and exports."""

from django.apps import AppConfig


class AuditingConfig(AppConfig):
    name = "twinops.auditing"
    label = "auditing"
