"""X-Forwarded-Proto is believed only from a trusted proxy: from anyone else the header is dropped on arrival."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from twinops.core.clients import from_trusted_proxy

# What a proxy says about the scheme; SECURE_PROXY_SSL_HEADER names the first (production, with trusted proxies).
FORWARDED_SCHEME_HEADERS = ("HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_PROTOCOL", "HTTP_X_FORWARDED_SSL")


class TrustedProxyHeadersMiddleware:
    """Drop the forwarded-scheme headers of a request that does not come from a trusted proxy.

    Otherwise any client could claim `X-Forwarded-Proto: https` over plain HTTP and be served as if on TLS (secure
    cookies sent, the redirect to https skipped). Runs first, before SecurityMiddleware reads the scheme.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not from_trusted_proxy(request):
            for header in FORWARDED_SCHEME_HEADERS:
                request.META.pop(header, None)
        return self.get_response(request)
