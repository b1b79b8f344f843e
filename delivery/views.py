"""Public views of the delivery app: the tracked click link ``/r/<signed token>/``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from delivery.receipts import ClickLinkError, click_link_follow


@never_cache
@require_GET
def click_redirect(request: HttpRequest, token: str) -> HttpResponse:
    """Record the click (first one wins) and redirect (302) to the link's signed target.

    GET, no login: the link is in a push message and stamping a click twice changes
    nothing. Only the target inside the signature is ever redirected to, so the view
    is not an open redirect; a tampered token gets a 400 page and records nothing.
    """
    try:
        target = click_link_follow(token=token)
    except ClickLinkError as exc:
        return render(request, "delivery/click_invalid.html", {"message": exc.message}, status=400)
    response = HttpResponseRedirect(target)
    # The token names a delivery: do not hand it to the target site.
    response["Referrer-Policy"] = "no-referrer"
    return response
