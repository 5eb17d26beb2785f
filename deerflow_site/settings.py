"""Settings, all read from the environment here and nowhere else.

The defaults are the embedded mode: SQLite (WAL), the in-memory channel layer and a run worker
inside the web process. At scale, set DATABASE_URL (PostgreSQL) and REDIS_URL and run
`manage.py runs_worker` processes with DEERFLOW_EMBEDDED_WORKER=false on the web processes.
"""

import os
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from deerflow_site import logs, setting_values

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """A boolean: 1/true/yes/on or 0/false/no/off."""
    return setting_values.boolean(name, os.environ.get(name), default)


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list from the environment."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_float(name: str, default: float, **bounds: Any) -> float:
    """A finite number of seconds in [0, MAX_SECONDS] unless `bounds` say otherwise
    (setting_values.number)."""
    bounds.setdefault("maximum", setting_values.MAX_SECONDS)
    return setting_values.number(name, os.environ.get(name), default, **bounds)


def env_int(name: str, default: int, **bounds: Any) -> int:
    """A whole number in [0, MAX_COUNT] unless `bounds` say otherwise (setting_values.integer)."""
    return setting_values.integer(name, os.environ.get(name), default, **bounds)


DEBUG = env_bool("DEBUG", False)

# --- Where this installation keeps its files, and which layout it is ----------------------
VAR_DIR = Path(os.environ.get("DEERFLOW_VAR_DIR", BASE_DIR / "var"))
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'deerflow.sqlite3'}")
REDIS_URL = setting_values.redis_url("REDIS_URL", os.environ.get("REDIS_URL", ""))
# The embedded install: SQLite and the in-memory channel layer, so one process on one machine.
EMBEDDED_INSTALL = DATABASE_URL.startswith("sqlite:") and not REDIS_URL
# The key `scripts/serve` makes once for the embedded install, beside its database.
SECRET_KEY_FILE = VAR_DIR / "secret_key"


def read_secret_key() -> str:
    """SECRET_KEY from the environment; else, in the embedded install only, the key in
    SECRET_KEY_FILE (so `manage.py` works beside `scripts/serve` with nothing exported); else a
    fixed development key when DEBUG is on. Raises ImproperlyConfigured otherwise: a deployment
    (PostgreSQL or Redis) always sets SECRET_KEY."""
    key = os.environ.get("SECRET_KEY", "").strip()
    if key:
        return key
    if EMBEDDED_INSTALL and SECRET_KEY_FILE.is_file():
        key = SECRET_KEY_FILE.read_text().strip()
        if key:
            return key
    if DEBUG:
        return "insecure-embedded-development-key"
    where = (
        f" (or run scripts/serve once, which makes {SECRET_KEY_FILE})" if EMBEDDED_INSTALL else ""
    )
    raise ImproperlyConfigured(f"SECRET_KEY must be set when DEBUG is off{where}")


SECRET_KEY = read_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])

# --- HTTPS: served over TLS, directly or behind a proxy that terminates it -------------------
HTTPS = env_bool("DEERFLOW_HTTPS", False)
#: Django's database sessions, a cookie of characters no session key has being no session.
SESSION_ENGINE = "deerflow_site.sessions"
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = env_int("DEERFLOW_HSTS_SECONDS", 31536000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = SECURE_HSTS_SECONDS > 0
if env_bool("DEERFLOW_TRUST_X_FORWARDED_PROTO", False):
    # Only behind a proxy that sets the header itself (and drops a client's).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    "deerflow_site.admin_site.AdminConfig",  # django.contrib.admin, refusing NUL characters
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "channels",
    "deerflow_site",
    "threads",
    "runs",
    "feedback",
    "playground",
]

MIDDLEWARE = [
    # corsheaders' and Django's own, with the hooks that never touch the database run on the
    # event loop, and the Origin read without parsing every header.
    "deerflow_site.middleware.CorsMiddleware",
    "deerflow_site.middleware.SecurityMiddleware",
    "deerflow_site.middleware.SessionMiddleware",
    "deerflow_site.middleware.CommonMiddleware",
    "deerflow_site.middleware.CsrfViewMiddleware",
    "deerflow_site.middleware.AuthenticationMiddleware",
    "deerflow_site.middleware.MessageMiddleware",
    "deerflow_site.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "deerflow_site.urls"
CSRF_FAILURE_VIEW = "deerflow_site.error_views.csrf_failure"
ASGI_APPLICATION = "deerflow_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "deerflow_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database: the only record -------------------------------------------------------------
# Requests run on pooled threads (deerflow_site.bridge.request_thread) that keep their connection
# this long (seconds; 0: a new connection per request), checked before each request's first query.
CONN_MAX_AGE = env_float("DEERFLOW_DB_CONN_MAX_AGE", 600.0)
#: The SQLite backend (`deerflow_site.backends.sqlite3`): Django's, with its placeholders
#: converted once per statement text.
SQLITE_ENGINE = "deerflow_site.backends.sqlite3"
try:
    _database = dj_database_url.parse(
        DATABASE_URL, conn_max_age=CONN_MAX_AGE, conn_health_checks=CONN_MAX_AGE > 0
    )
except ValueError:  # dj_database_url's unknown scheme (UnknownSchemeError)
    _database = {"ENGINE": None}
if _database["ENGINE"] == "django.db.backends.sqlite3":
    if _database["NAME"] != ":memory:":
        Path(_database["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    _database["ENGINE"] = SQLITE_ENGINE
    _database["OPTIONS"] = {
        # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so that
        # two writers queue on busy_timeout instead of failing to upgrade a read lock.
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;"
        ),
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif _database["ENGINE"] == "django.db.backends.postgresql":
    _database["CONN_HEALTH_CHECKS"] = True
else:
    raise ImproperlyConfigured("DATABASE_URL must be a sqlite:// or postgres:// URL")
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer: the bus, never the record ----------------------------------------------
#: Messages one listener holds before new ones are dropped (on the layer and in-process alike).
CHANNEL_CAPACITY = env_int("DEERFLOW_CHANNEL_CAPACITY", 2000, minimum=1)
if REDIS_URL:
    _LAYER_RETRY = Retry(ExponentialBackoff(cap=1.0, base=0.1), retries=2)
    CHANNEL_LAYERS = {
        "default": {
            # channels_redis's, a group's send and add in fewer round trips.
            "BACKEND": "runs.engine.redis_layer.RedisChannelLayer",
            "CONFIG": {
                # Longer than the layer's 5 s blocking pops: redis-py 8 defaults sockets to a 5 s
                # read timeout, which broke every idle receive. A command on a pooled connection
                # that a restarted Redis closed is sent again on a new one (redis-py retries
                # none by default: each such connection failed a request with a 500).
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30, "retry": _LAYER_RETRY}],
                "capacity": CHANNEL_CAPACITY,
                "expiry": 60,
                "prefix": os.environ.get("DEERFLOW_CHANNEL_PREFIX", "deerflow"),
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY, "expiry": 60},
        }
    }

# --- Authentication ------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "deerflow_site.api.backends.CachedModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
# "local": every request acts as one local user (the embedded default); "token": session, Bearer
# and X-Api-Key credentials are required.
AUTH_MODE = (
    (os.environ.get("DEERFLOW_AUTH_MODE") or ("local" if DEBUG else "token")).strip().lower()
)
if AUTH_MODE not in {"local", "token"}:
    raise ImproperlyConfigured("DEERFLOW_AUTH_MODE must be 'local' or 'token'")
ALLOW_LOCAL_AUTH_IN_PRODUCTION = env_bool("DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION", False)
if AUTH_MODE == "local" and not DEBUG and not ALLOW_LOCAL_AUTH_IN_PRODUCTION:
    raise ImproperlyConfigured(
        "DEERFLOW_AUTH_MODE=local gives every request one user's rights; it is refused while "
        "DEBUG is off unless DEERFLOW_ALLOW_LOCAL_AUTH_IN_PRODUCTION=true"
    )
LOCAL_USERNAME = os.environ.get("DEERFLOW_LOCAL_USERNAME", "local")
# How long a process keeps a user's model permissions (API scopes, staff rights). Changes made in
# the same process apply at once; other processes see them within this time. 0: no caching.
PERMISSION_CACHE_SECONDS = env_float("DEERFLOW_PERMISSION_CACHE_SECONDS", 5.0)
GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user object

# --- CORS ----------------------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_ALLOW_CREDENTIALS = env_bool("CORS_ALLOW_CREDENTIALS", True)
CORS_EXPOSE_HEADERS = ["Content-Location", "Location", "X-Pagination-Total", "X-Pagination-Next"]
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "x-api-key",
    "last-event-id",
    "content-type",
    "x-csrftoken",
]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", CORS_ALLOWED_ORIGINS)

# --- API -----------------------------------------------------------------------------------
API_PREFIX = setting_values.api_prefix(
    "DEERFLOW_API_PREFIX", os.environ.get("DEERFLOW_API_PREFIX", "/api")
)
# Request bounds: a larger body is a 413; JSON nested deeper (objects and arrays) is a 422. The
# depth stays well below what the interpreter's recursion limit lets the ORM and LangGraph handle.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DEERFLOW_MAX_BODY_BYTES", 2_621_440, minimum=1)
MAX_JSON_DEPTH = env_int("DEERFLOW_MAX_JSON_DEPTH", 64, minimum=1, maximum=128)
# Load balancers probe health over plain HTTP.
SECURE_REDIRECT_EXEMPT = [rf"^{API_PREFIX.lstrip('/')}/ok$"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": (
        ["deerflow_site.api.authentication.LocalUserAuthentication"]
        if AUTH_MODE == "local"
        else [
            # Bearer first: its WWW-Authenticate header is what makes DRF answer 401, not 403.
            "deerflow_site.api.authentication.BearerTokenAuthentication",
            "deerflow_site.api.authentication.ApiKeyAuthentication",
            "deerflow_site.api.authentication.CsrfSessionAuthentication",
        ]
    ),
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "deerflow_site.api.permissions.HasScope",
    ],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["deerflow_site.api.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "deerflow_site.api.negotiation.JsonFirstNegotiation",
    "EXCEPTION_HANDLER": "deerflow_site.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "deerflow_site.api.schema.ApiAutoSchema",
    "UNAUTHENTICATED_USER": None,
}
# The name people see: the front page, the admin's header, the API docs.
PROJECT_NAME = "deerflow agent server"
SPECTACULAR_SETTINGS = {
    "TITLE": PROJECT_NAME,
    "DESCRIPTION": "The LangGraph Platform HTTP API with the deer-flow gateway extensions.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed package, not a CDN: the docs page works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # `select` leaves fields out of threads, runs, assistants and states: none is required in a
    # response.
    "COMPONENT_NO_READ_ONLY_REQUIRED": True,
    # Choice sets named as the domain names them (drf-spectacular names them by field, and three
    # fields called `status` would collide).
    "ENUM_NAME_OVERRIDES": {
        "RunStatus": "runs.models.Run.Status",
        "ThreadStatus": "threads.models.Thread.Status",
        "BulkCancelStatus": ["pending", "running", "all"],
        "MultitaskStrategy": "runs.models.Run.MultitaskStrategy",
        "CancelAction": "runs.models.Run.CancelAction",
        "OnCompletion": "runs.models.Run.OnCompletion",
        "OnDisconnect": "runs.models.Run.OnDisconnect",
        "ThreadSortBy": "threads.selectors.SORT_FIELDS",
        "AssistantSortBy": "runs.assistants.selectors.SORT_FIELDS",
        "ThreadField": "threads.serializers.THREAD_FIELDS",
        "RunField": "runs.serializers.RUN_FIELDS",
        "AssistantField": "runs.assistants.selectors.ASSISTANT_FIELDS",
    },
}

# --- Runs ----------------------------------------------------------------------------------
EMBEDDED_WORKER = env_bool("DEERFLOW_EMBEDDED_WORKER", True)
WORKER_CONCURRENCY = env_int("DEERFLOW_WORKER_CONCURRENCY", 10, minimum=1)
RUN_LEASE_SECONDS = env_float("DEERFLOW_RUN_LEASE_SECONDS", 30.0, above_minimum=True)
RUN_POLL_SECONDS = env_float("DEERFLOW_RUN_POLL_SECONDS", 1.0, above_minimum=True)
SSE_HEARTBEAT_SECONDS = env_float("DEERFLOW_SSE_HEARTBEAT_SECONDS", 5.0, above_minimum=True)
STREAM_RETENTION_SECONDS = env_float("DEERFLOW_STREAM_RETENTION_SECONDS", 3600.0)
# `manage.py cleanup`: finished runs older than this go (0: kept forever); rows per transaction.
RUN_RETENTION_DAYS = env_float("DEERFLOW_RUN_RETENTION_DAYS", 30.0, maximum=setting_values.MAX_DAYS)
CLEANUP_BATCH_SIZE = env_int("DEERFLOW_CLEANUP_BATCH_SIZE", 500, minimum=1)
LANGGRAPH_CONFIG = os.environ.get("DEERFLOW_LANGGRAPH_CONFIG", "")
# Limits checked at admission: active (pending or running) runs per user (over it: 429), runs per
# POST /runs/batch, a run's config.recursion_limit and after_seconds (over them: 422).
MAX_ACTIVE_RUNS_PER_USER = env_int("DEERFLOW_MAX_ACTIVE_RUNS_PER_USER", 10)
MAX_BATCH_SIZE = env_int("DEERFLOW_MAX_BATCH_SIZE", 100, minimum=1)
MAX_RECURSION_LIMIT = env_int("DEERFLOW_MAX_RECURSION_LIMIT", 1000, minimum=1)
MAX_AFTER_SECONDS = env_float("DEERFLOW_MAX_AFTER_SECONDS", 366 * 24 * 3600)
# The small graphs the test suite runs (`echo`, `slow`, `failing`, ...): off in production.
SAMPLE_GRAPHS = env_bool("DEERFLOW_SAMPLE_GRAPHS", False)
# The built-in `agent` graph's chat model: any OpenAI-compatible endpoint. Unset: a deterministic
# scripted model that works offline.
AGENT_MODEL = os.environ.get("DEERFLOW_AGENT_MODEL", "")
AGENT_MODEL_BASE_URL = os.environ.get("DEERFLOW_AGENT_MODEL_BASE_URL", "")
AGENT_MODEL_API_KEY = os.environ.get("DEERFLOW_AGENT_MODEL_API_KEY", "")
# On SIGTERM a worker lets running runs finish this long, then ends them `error`.
WORKER_SHUTDOWN_SECONDS = env_float("DEERFLOW_WORKER_SHUTDOWN_SECONDS", 10.0)
# A run with on_completion=delete deletes its thread this long after it ends (its final state
# stays readable meanwhile for /wait and /join).
ON_COMPLETION_DELETE_SECONDS = env_float("DEERFLOW_ON_COMPLETION_DELETE_SECONDS", 5.0)
# Run webhooks: loopback and private targets are refused unless allowed (tests, intranets).
WEBHOOK_ALLOW_PRIVATE = env_bool("DEERFLOW_WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_TIMEOUT_SECONDS = env_float("DEERFLOW_WEBHOOK_TIMEOUT_SECONDS", 10.0, above_minimum=True)
WEBHOOK_ATTEMPTS = env_int("DEERFLOW_WEBHOOK_ATTEMPTS", 4, minimum=1)
# The run journal: a worker writes a run's events at most this long after they happen, or at
# once when this many are waiting (and always before the run's end is published).
JOURNAL_FLUSH_SECONDS = env_float("DEERFLOW_JOURNAL_FLUSH_SECONDS", 0.5, above_minimum=True)
JOURNAL_BATCH_SIZE = env_int("DEERFLOW_JOURNAL_BATCH_SIZE", 200, minimum=1)

# --- The rest of Django --------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
# Optional: where `collectstatic` gathers files for a front proxy to serve.
STATIC_ROOT = os.environ.get("DEERFLOW_STATIC_ROOT") or None

LOG_LEVEL = setting_values.log_level(
    "DEERFLOW_LOG_LEVEL", os.environ.get("DEERFLOW_LOG_LEVEL"), "INFO"
)
# `json`: one JSON object per line (python-json-logger), for a log collector.
LOG_FORMAT = os.environ.get("DEERFLOW_LOG_FORMAT", "text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"DEERFLOW_LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
LOGGING = logs.logging_config(level=LOG_LEVEL, log_format=LOG_FORMAT)
