"""Admin wiring for Unfold: the dashboard and the environment label.

Unfold calls these through settings.UNFOLD (DASHBOARD_CALLBACK, ENVIRONMENT).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils.formats import number_format
from django.utils.translation import gettext as _

from audiences.selectors import audience_stats
from delivery.selectors import pipeline_health


def environment_callback(request: HttpRequest) -> list[str] | None:
    if settings.DEBUG:
        return [_("Development"), "warning"]
    return None


def dashboard_callback(request: HttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers from real aggregate queries (a handful, whatever the audience size)."""
    stats = audience_stats()
    health = pipeline_health()
    rate = stats.opt_in_rate
    language_names = dict(settings.LANGUAGES)
    platform_names = {"android": "Android", "ios": "iOS", "web": "Web"}

    def n(value: int) -> str:  # grouped the way the admin's language writes numbers
        return number_format(value, force_grouping=True)

    context.update(
        {
            "kpis": [
                {
                    "title": _("Subscribers"),
                    "value": n(stats.subscribers),
                    "footer": _("%(n)s reachable (opted in, with an active device)")
                    % {"n": n(stats.reachable_subscribers)},
                    "href": reverse("admin:audiences_subscriber_changelist"),
                    "id": "kpi-subscribers",
                },
                {
                    "title": _("Reachable devices"),
                    "value": n(stats.reachable_devices),
                    "footer": " · ".join(
                        f"{platform_names.get(p, p)} {n:,}" for p, n in stats.devices_by_platform.items()
                    )
                    or _("No active devices yet"),
                    "href": reverse("admin:audiences_device_changelist") + "?is_active__exact=1",
                    "id": "kpi-devices",
                },
                {
                    "title": _("Opt-in rate"),
                    "value": f"{number_format(round(rate * 100, 1), decimal_pos=1)}%"
                    if rate is not None
                    else "—",
                    "footer": _("%(in)s of %(all)s subscribers opted in to push")
                    % {"in": n(stats.opted_in), "all": n(stats.subscribers)},
                    "href": reverse("admin:audiences_subscriber_changelist") + "?push_opt_in__exact=1",
                    "id": "kpi-opt-in",
                },
            ],
            "languages": [
                {
                    "code": code,
                    "name": language_names.get(code, code),
                    "count": n,
                    "share": round(100 * n / stats.subscribers, 1) if stats.subscribers else 0,
                }
                for code, n in stats.subscribers_by_language.items()
            ],
            "health": health,
        }
    )
    return context
