"""The values of settings, checked when the settings load: a bad one is ImproperlyConfigured,
naming the variable and what it must be, so a process refuses to start instead of failing later
in a request or a worker.

These take the raw text (None when unset); `deerflow_site/settings.py` alone reads the
environment and passes it here.
"""

import math
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix")
#: First path segments the site itself serves: an API prefix there would hide them, or be hidden.
RESERVED_PREFIXES = ("admin", "playground", "static")
#: The largest value of each kind, so that none overflows where it is used (a date this far back
#: or ahead, a LIMIT, a 32-bit column): about 31 years of seconds, 100 years of days, a count.
MAX_SECONDS = 1_000_000_000
MAX_DAYS = 36_500
MAX_COUNT = 2**31 - 1


def boolean(name: str, raw: str | None, default: bool) -> bool:
    """1/true/yes/on are true, 0/false/no/off false (any case); unset or blank: `default`."""
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {raw!r}")


def number(
    name: str,
    raw: str | None,
    default: float,
    *,
    minimum: float = 0.0,
    above_minimum: bool = False,
    maximum: float = math.inf,
) -> float:
    """A finite number in [minimum, maximum] (above `minimum` when `above_minimum`); unset or
    blank: `default`. NaN and infinities are refused."""
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc
    low_ok = value > minimum if above_minimum else value >= minimum
    if not math.isfinite(value) or not low_ok or value > maximum:
        bound = f"greater than {minimum:g}" if above_minimum else f"at least {minimum:g}"
        if maximum != math.inf:
            bound = f"{bound} and at most {maximum:.15g}"
        raise ImproperlyConfigured(f"{name} must be a finite number {bound}, got {raw!r}")
    return value


def integer(
    name: str, raw: str | None, default: int, *, minimum: int = 0, maximum: float = MAX_COUNT
) -> int:
    """A whole number in [minimum, maximum] (at most MAX_COUNT); unset or blank: `default`."""
    value = number(name, raw, default, minimum=minimum, maximum=maximum)
    if not float(value).is_integer():
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}")
    return int(value)


def log_level(name: str, raw: str | None, default: str) -> str:
    """One of LOG_LEVELS (any case)."""
    value = (raw or default).strip().upper()
    if value not in LOG_LEVELS:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return value


def redis_url(name: str, raw: str) -> str:
    """'' (unset) or a redis://, rediss:// or unix:// URL."""
    if raw and (urlsplit(raw).scheme not in REDIS_SCHEMES or "://" not in raw):
        raise ImproperlyConfigured(
            f"{name} must be a redis://host:port/db URL (or rediss://, unix://), got {raw!r}"
        )
    return raw


def api_prefix(name: str, raw: str) -> str:
    """'/' + the prefix without its slashes: not empty, URL-safe characters, and not a path the
    site serves itself (RESERVED_PREFIXES)."""
    prefix = "/" + raw.strip().strip("/")
    if prefix == "/":
        raise ImproperlyConfigured(f"{name} must not be empty")
    if any(not (c.isascii() and (c.isalnum() or c in "-._~/")) for c in prefix):
        raise ImproperlyConfigured(f"{name} must hold only letters, digits, - . _ ~ and /")
    if prefix.split("/")[1] in RESERVED_PREFIXES:
        raise ImproperlyConfigured(
            f"{name} must not start with /{prefix.split('/')[1]}: the site serves that path"
        )
    return prefix


def command_option(
    option: str, value: str | float | None, *, whole: bool = False, **bounds: Any
) -> float | None:
    """A management command's numeric option checked as a setting is (`integer` when `whole`,
    else `number`, with the same bounds): the text given on the command line (so a refusal
    quotes what was typed, '-1', not argparse's -1.0) or a number (`call_command`'s keywords,
    a setting's default); None (not given) stays None. A value refused is a CommandError naming
    the option."""
    from django.core.management.base import CommandError  # not at settings' load

    if value is None:
        return None
    raw = value if isinstance(value, str) else repr(value)
    if not raw.strip():  # a setting left blank takes its default; an option has none
        raise CommandError(f"{option} needs a number, got {raw!r}")
    check = integer if whole else number
    try:
        return check(option, raw, 0, **bounds)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from exc
