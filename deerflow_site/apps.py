from django.apps import AppConfig


class DeerflowSiteConfig(AppConfig):
    """The project itself as an app: its system checks."""

    name = "deerflow_site"
    label = "deerflow_site"

    def ready(self) -> None:
        from deerflow_site import checks

        checks.install()
