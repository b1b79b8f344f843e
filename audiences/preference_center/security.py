"""Strict response headers for the preference center's pages.

The pages are personal (anyone holding the link sees one subscriber's choices), so:
no caching anywhere, no framing, a Content-Security-Policy that allows only this
site's own scripts, styles, images and form targets — no inline script or style at
all — and a referrer policy that never sends the page's path (the token is in it).

Referrer-Policy is ``strict-origin``, not ``no-referrer``: under ``no-referrer``
browsers send ``Origin: null`` with form POSTs (Fetch standard, "serializing a request
origin"), which Django's CSRF check rightly refuses, so no change could be saved.
``strict-origin`` sends at most ``https://host/`` — never the path with the token —
and keeps the Origin header real for the CSRF check.

Applied per view (a decorator) rather than as a site-wide middleware: the admin needs
inline scripts and styles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store, private",
    "Referrer-Policy": "strict-origin",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

View = Callable[..., HttpResponse]


def strict_headers(view: View) -> View:
    """Set :data:`HEADERS` on every response of ``view`` (overriding site defaults)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        for name, value in HEADERS.items():
            response[name] = value
        # Never an entity tag or expiry that would let a cache think it may keep the page.
        response["Expires"] = "0"
        return response

    return wrapper
