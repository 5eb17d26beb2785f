"""Settings of bench/run's `floor` server (bench/floor_app.py): our settings, with no middleware
and the floor's three views as the URLs."""

from deerflow_site.settings import *  # noqa: F403

MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.floor_app"
