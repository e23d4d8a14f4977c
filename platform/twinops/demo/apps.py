from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "twinops.demo"
    label = "demo"

    def ready(self) -> None:
        from twinops.demo import checks  # noqa: F401  registers the deployment check of the demo accounts
