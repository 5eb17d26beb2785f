"""System checks: Django's security checks, told about this project's middleware subclasses.

Django's security checks look for its middleware by dotted path in MIDDLEWARE. This project lists
subclasses (deerflow_site.middleware), so `check --deploy` would warn that there is no security,
clickjacking or CSRF middleware and stay silent about what matters: HSTS, secure cookies, the SSL
redirect. Each of Django's security checks runs here with MIDDLEWARE spelled as Django's own
paths wherever an entry subclasses one of Django's classes.
"""

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.core.checks.registry import registry
from django.utils.module_loading import import_string

#: The middleware Django's security checks look for by path.
CHECKED_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
)
SECURITY_CHECKS_MODULE = "django.core.checks.security."


def middleware_as_django_names(middleware: list[str]) -> list[str]:
    """MIDDLEWARE with every subclass of a CHECKED_MIDDLEWARE class named as that class."""
    named = []
    for path in middleware:
        cls = import_string(path)
        base = next(
            (django for django in CHECKED_MIDDLEWARE if issubclass(cls, import_string(django))),
            path,
        )
        named.append(base)
    return named


@contextlib.contextmanager
def _django_middleware_names() -> Iterator[None]:
    original = settings.MIDDLEWARE
    settings.MIDDLEWARE = middleware_as_django_names(original)
    try:
        yield
    finally:
        settings.MIDDLEWARE = original


def _seeing_subclasses(check: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(check)
    def run(app_configs: Any = None, **kwargs: Any) -> Any:
        with _django_middleware_names():
            return check(app_configs, **kwargs)

    run.tags = check.tags  # type: ignore[attr-defined]
    return run


def install() -> None:
    """Replace Django's registered security checks by ones that see the subclasses (once)."""
    for checks in (registry.registered_checks, registry.deployment_checks):
        for check in list(checks):
            module = getattr(check, "__module__", "") or ""
            if module.startswith(SECURITY_CHECKS_MODULE) and not hasattr(check, "__wrapped__"):
                checks.discard(check)
                checks.add(_seeing_subclasses(check))
