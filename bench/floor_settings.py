"""Settings of bench/run's `floor` servers (bench/floor_app.py, bench/floor_split.py): our
settings, with no middleware and the floor's views as the URLs (FLOOR_URLCONF, by default
bench.floor_app's)."""

import os

from deerflow_site.settings import *  # noqa: F403

MIDDLEWARE: list[str] = []
ROOT_URLCONF = os.environ.get("FLOOR_URLCONF", "bench.floor_app")
