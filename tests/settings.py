"""Settings for the test suite: the real settings, run as production runs them (token auth).

Environment defaults are set here, before the real settings read them, so that the live daphne
processes the tests start inherit the same configuration.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-suite-secret-key")
os.environ.setdefault("DEERFLOW_AUTH_MODE", "token")
os.environ.setdefault("CORS_ALLOWED_ORIGINS", "http://localhost:3000")
os.environ.setdefault("DEERFLOW_SAMPLE_GRAPHS", "true")
# Races and soaks leave many runs of one user pending; the limit's own tests set it.
os.environ.setdefault("DEERFLOW_MAX_ACTIVE_RUNS_PER_USER", "0")
# Webhook receivers in the tests listen on loopback.
os.environ.setdefault("DEERFLOW_WEBHOOK_ALLOW_PRIVATE", "true")
# A live server stopped with runs in flight lets them go on this long (the stop waits 10 s).
os.environ.setdefault("DEERFLOW_WORKER_SHUTDOWN_SECONDS", "1")

from deerflow_site.settings import *  # noqa: F403

# Creating users is most of some tests' time with a slow hasher; live servers share these settings.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
