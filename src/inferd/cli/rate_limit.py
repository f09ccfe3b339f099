"""`--rate-limit` and `--rate-limit-resource`: the server's one rate limiter, or None when off."""

from __future__ import annotations

from inferd.cli.settings import ServerSettings
from inferd.scheduling.rate_limiter import RateLimiter, RateLimitMode, ServerResource


def rate_limiter(settings: ServerSettings) -> RateLimiter | None:
    """Raises ValueError for a malformed `--rate-limit-resource` (`rate_limit_error` first)."""
    resources = [ServerResource.parse(text) for text in settings.rate_limit_resource]
    if settings.rate_limit is RateLimitMode.OFF:
        return None
    return RateLimiter(resources)


def rate_limit_error(settings: ServerSettings) -> str | None:
    """Why the rate-limit flags cannot be used, or None."""
    try:
        rate_limiter(settings)
    except ValueError as exc:
        return str(exc)
    return None
