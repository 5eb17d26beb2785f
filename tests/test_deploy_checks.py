"""`manage.py check --deploy` sees the project's middleware subclasses: its real warnings (HSTS,
secure cookies, the SSL redirect) show, and the README's production settings clear them."""

import secrets

import pytest

from deerflow_site.checks import CHECKED_MIDDLEWARE, middleware_as_django_names

pytestmark = pytest.mark.django_db(transaction=True)  # manage.py runs on the test database

#: The README's production settings (Deployment at scale), on the test database.
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "deerflow_site.settings",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "agents.example.com",
    "DEERFLOW_HTTPS": "true",
    "DEBUG": "false",
    "DEERFLOW_AUTH_MODE": None,
}


def test_every_checked_django_middleware_is_recognised_in_its_subclass(settings) -> None:
    assert set(CHECKED_MIDDLEWARE) <= set(middleware_as_django_names(settings.MIDDLEWARE))


def test_check_deploy_is_clean_with_the_readmes_production_settings(manage_py) -> None:
    result = manage_py("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)

    assert "no issues" in result.stderr + result.stdout


def test_check_deploy_warns_about_hsts_and_insecure_cookies_without_https(manage_py) -> None:
    result = manage_py(
        "check", "--deploy", env={**PRODUCTION, "DEERFLOW_HTTPS": "false"}, check=False
    )

    output = result.stderr + result.stdout
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in output
    for hidden in ("security.W001", "security.W002", "security.W003"):
        assert hidden not in output
