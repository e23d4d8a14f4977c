from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "twinops.core"
    label = "core"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from twinops.core.roles import roles_sync

        post_migrate.connect(lambda sender, **kw: roles_sync() if sender.label == "core" else None, weak=False)
