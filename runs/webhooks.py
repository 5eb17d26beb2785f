"""Run webhooks: which URLs a run may name, and posting the finished run to one.

A URL is checked when the run is created (scheme, no credentials, and every address its host
resolves to) and again whenever a connection is opened to send: httpx-secure connects only to the
address it has just validated with the same rule, so a name that resolved to a public address at
admission and resolves to a private one later (DNS rebinding) is refused then too. The rule
refuses loopback, private, link-local, multicast and other special-use addresses unless
`WEBHOOK_ALLOW_PRIVATE` lets loopback and private ones through (tests, intranets); link-local
(cloud metadata), multicast, unspecified and reserved addresses are refused always.

httpx-secure picks the address by opening (and closing) a TCP connection to the host name before
it validates it, so a rebound name costs a TCP handshake with the refused address, never a byte
of the request.
"""

import asyncio
import logging
import socket
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

import httpx
from django.conf import settings
from httpx_secure import SSRFProtectionError, httpx_ssrf_protection

from runs.exceptions import WebhookRefused

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048
#: Seconds a host name may take to resolve at admission.
RESOLVE_TIMEOUT_SECONDS = 5.0
#: Seconds before the first retry; each further retry waits twice as long as the one before.
FIRST_BACKOFF_SECONDS = 0.5
#: Answers worth another attempt; any other non-2xx answer is final.
RETRIED_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
SHARED_ADDRESS_SPACE = IPv4Network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
NAT64_PREFIX = IPv6Network("64:ff9b::/96")  # embeds an IPv4 address (RFC 6052)

logger = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address


def address_allowed(address: IPAddress, *, allow_private: bool) -> bool:
    """Whether a webhook may connect to `address`: a global unicast address, or with
    `allow_private` also a loopback or private one."""
    if isinstance(address, IPv6Address):
        # IPv4-mapped, 6to4 (2002::/16, RFC 3056) and NAT64 addresses reach an IPv4 address.
        embedded = (
            address.ipv4_mapped
            or address.sixtofour
            or (IPv4Address(address.packed[-4:]) if address in NAT64_PREFIX else None)
        )
        if embedded is not None:
            return address_allowed(embedded, allow_private=allow_private)
    if (
        address.is_multicast
        or address.is_unspecified
        or address.is_link_local
        or address.is_reserved
    ):
        return False
    if address.is_global:
        return True
    local = address.is_loopback or address.is_private or address in SHARED_ADDRESS_SPACE
    return allow_private and local


def parse_webhook_url(url: str) -> httpx.URL:
    """`url` as httpx will send to it; raises WebhookRefused (422) when it is not an absolute
    http(s) URL without credentials."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(f"Must be at most {MAX_URL_LENGTH} characters.")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise WebhookRefused("Must be a valid URL.") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise WebhookRefused("Must be an http or https URL.")
    if parsed.userinfo:
        raise WebhookRefused("Must not carry credentials (user:password@).")
    if not parsed.raw_host:
        raise WebhookRefused("Must name a host.")
    return parsed


async def check_webhook_target(url: str) -> None:
    """Refuse (WebhookRefused, 422) a webhook whose host does not resolve, or resolves to any
    address that `address_allowed` refuses. The scheme and credentials are checked too."""
    parsed = parse_webhook_url(url)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    allow_private = settings.WEBHOOK_ALLOW_PRIVATE
    try:
        addresses = [ip_address(host)]
    except ValueError:
        addresses = await _resolve(host, port)
    for address in addresses:
        if not address_allowed(address, allow_private=allow_private):
            raise WebhookRefused(
                f"Its host resolves to {address}, a loopback, private, link-local or other "
                "special-use address."
            )


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM),
            timeout=RESOLVE_TIMEOUT_SECONDS,
        )
    except (OSError, UnicodeError, TimeoutError):
        raise WebhookRefused(f"Its host {host!r} cannot be resolved.") from None
    addresses = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses.append(ip_address(sockaddr[0].split("%", 1)[0]))
    if not addresses:
        raise WebhookRefused(f"Its host {host!r} has no IP address.")
    return addresses


@dataclass(frozen=True)
class Delivery:
    """How posting a webhook went: `delivered`, after `attempts` tries; `detail` says why not."""

    delivered: bool
    attempts: int
    detail: str


def _allowed_at_send(_host: str, address: IPAddress, _port: int) -> bool:
    return address_allowed(address, allow_private=settings.WEBHOOK_ALLOW_PRIVATE)


async def post_webhook(*, url: str, payload: dict[str, Any]) -> Delivery:
    """POST `payload` as JSON to `url`: up to `WEBHOOK_ATTEMPTS` tries, each within
    `WEBHOOK_TIMEOUT_SECONDS` from connecting to the answer's status line, with exponential
    backoff between them (0.5 s, 1 s, 2 s, ...).

    Only the status is read: the answer's body, however long or slow, is never waited for nor
    held. A connection to an address the rule refuses fails at once, without retries. Never
    raises for what the receiver does: the result says what happened.
    """
    attempts = max(1, settings.WEBHOOK_ATTEMPTS)
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    detail = ""
    client = httpx.AsyncClient(timeout=timeout, trust_env=False, follow_redirects=False)
    httpx_ssrf_protection(client, check_globally_reachable=False, custom_validator=_allowed_at_send)
    async with client:
        for attempt in range(1, attempts + 1):
            try:
                # httpx's timeout bounds each read, not the attempt: a receiver sending a
                # byte now and then would hold it for ever.
                async with asyncio.timeout(timeout):
                    async with client.stream("POST", url, json=payload) as response:
                        status = response.status_code
            except SSRFProtectionError as exc:
                return Delivery(delivered=False, attempts=attempt, detail=f"refused: {exc}")
            except TimeoutError:
                detail = f"no answer within {timeout} s"
            except httpx.HTTPError as exc:
                detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if httpx.codes.is_success(status):
                    return Delivery(delivered=True, attempts=attempt, detail="")
                detail = f"answered {status}"
                if status not in RETRIED_STATUSES:
                    return Delivery(delivered=False, attempts=attempt, detail=detail)
            if attempt < attempts:
                logger.info("webhook attempt %s failed (%s); retrying", attempt, detail)
                await asyncio.sleep(FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1))
    return Delivery(delivered=False, attempts=attempts, detail=detail)
