"""The accounts app: user accounts in roles and the API tokens of machine clients, created and revoked audited."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "twinops.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"
