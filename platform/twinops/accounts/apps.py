"""The accounts app: user accounts in roles and the API tokens of machine clients, created and revoked audited."""

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "twinops.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Audit logins, failed logins and lockouts."""
        from django.contrib.auth.signals import user_logged_in, user_login_failed

        from twinops.accounts import receivers
        from twinops.core.logins import login_locked_out

        user_logged_in.connect(receivers.on_logged_in, dispatch_uid="accounts.audit_login")
        user_login_failed.connect(receivers.on_login_failed, dispatch_uid="accounts.audit_login_failed")
        login_locked_out.connect(receivers.on_locked_out, dispatch_uid="accounts.audit_lockout")
