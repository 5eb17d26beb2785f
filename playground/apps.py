from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    """A chat page on the JS SDK's useStream, served at /playground/ (issue 11, item 10)."""

    name = "playground"
