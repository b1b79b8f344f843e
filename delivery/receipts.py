"""Receipts: opens and clicks reported back, tracked click links, and conversions.

- **Opens and clicks** arrive through the client API (``POST /api/v1/deliveries/{id}/
  opened|clicked``, :mod:`delivery.api`) or through a tracked link
  (``/r/<signed token>/``, :mod:`delivery.views`). Either way :func:`receipt_record`
  stamps the ledger row (``opened_at``/``clicked_at``, the first report wins; a click
  implies an open) and records the ``push_opened``/``push_clicked`` event through
  the audiences service, in one transaction.
- **Tracked links** wrap a message's web click action: :func:`click_tracking_url`
  signs (delivery id, target) with ``django.core.signing`` (salt ``notifyhub.click``),
  so the redirect goes only where the signature says — never an open redirect.
- **Conversions** (:func:`run_conversions`) are set-based: one ``UPDATE … WHERE
  EXISTS`` stamps ``converted_at`` on every delivery of a run whose subscriber did the
  campaign's goal event within the attribution window after the send — for the
  control group, after the time they would have received it (``scheduled_for``).
  :func:`conversions_update` runs it for every run whose window is still open; beat
  calls it periodically.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import (
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from audiences.models import Event
from audiences.services.events import FieldError, FieldValidationError, event_track_receipt
from delivery.models import Delivery, Run
from notifyhub.exceptions import ApplicationError

logger = logging.getLogger(__name__)

ReceiptKind = Literal["opened", "clicked"]
KINDS: tuple[ReceiptKind, ...] = ("opened", "clicked")
CLICK_SALT = "notifyhub.click"
# The path of a tracked link: a public interface (it is in messages already sent), so
# spelled out here and matched by delivery.urls; it must not move.
CLICK_PATH = "/r/{token}/"
DEFAULT_PUBLIC_URL = "http://localhost:8000"
# Only web addresses are wrapped (and redirected to): deep links (yourapp://…) open the
# app directly, which reports the click through the API.
TRACKED_SCHEMES = frozenset({"http", "https"})
# The longest attribution window a campaign may have (Campaign.conversion_window_hours).
MAX_CONVERSION_WINDOW = dt.timedelta(hours=24 * 30)
# Clients may send events late (offline batches with their real occurred_at): a run's
# conversions are recomputed for this long after its window closed.
LATE_EVENT_SLACK = dt.timedelta(hours=24)


class DeliveryNotFound(ApplicationError):
    """No delivery has this id (HTTP 404 in the API)."""


class ClickLinkError(ApplicationError):
    """A tracked link whose signature does not verify (tampered or truncated)."""


@dataclass(frozen=True)
class ReceiptResult:
    """``recorded``: this report changed something (a first stamp or a new event)."""

    stamped: bool
    event_recorded: bool

    @property
    def recorded(self) -> bool:
        return self.stamped or self.event_recorded


@dataclass(frozen=True)
class ClickTarget:
    delivery_id: int
    target: str


# ---------------------------------------------------------------------------
# Opens and clicks
# ---------------------------------------------------------------------------


def receipt_record(
    *,
    delivery_id: int,
    kind: ReceiptKind,
    external_id: str | None = None,
    occurred_at: dt.datetime | None = None,
    properties: dict[str, Any] | None = None,
) -> ReceiptResult:
    """Record that a delivery was opened or clicked: stamp the ledger and track the event.

    Transaction: one — the ledger stamp and the ``push_opened``/``push_clicked`` event
    (``audiences.services.events.event_track_receipt``) are written together or not
    at all. ``external_id``, when given (the API), must be the delivery's subscriber;
    a tracked link passes None and the delivery's own subscriber is used.

    Idempotency: the stamps are conditional UPDATEs (``… WHERE opened_at IS NULL``),
    so the first report's time wins; the event's idempotency key is
    ``nh:receipt:<kind>:<delivery_id>``. A click also stamps ``opened_at`` when it is
    still empty (a click implies an open); it does not invent a ``push_opened`` event.

    Raises DeliveryNotFound for an unknown delivery and FieldValidationError (nothing
    written) for another subscriber's external id or an unusable ``occurred_at``.
    """
    if kind not in KINDS:
        raise FieldValidationError([FieldError("kind", "Use 'opened' or 'clicked'.")], "Unknown receipt.")
    with transaction.atomic():
        owner = (
            Delivery.objects.filter(pk=delivery_id).values_list("subscriber__external_id", flat=True).first()
        )
        if owner is None:
            raise DeliveryNotFound(
                f"No delivery has the id {delivery_id}: send the nh_delivery_id from the push's data."
            )
        if external_id is not None and external_id != owner:
            raise FieldValidationError(
                [
                    FieldError(
                        "external_id",
                        f"Delivery {delivery_id} went to another subscriber; send the external id of "
                        "the subscriber who received the push.",
                    )
                ],
                "The receipt was not recorded.",
            )
        tracked = event_track_receipt(
            delivery_id=delivery_id,
            kind=kind,
            external_id=owner,
            occurred_at=occurred_at,
            properties=properties,
        )
        at = occurred_at or timezone.now()
        rows = Delivery.objects.filter(pk=delivery_id)
        if kind == "opened":
            stamped = rows.filter(opened_at__isnull=True).update(opened_at=at)
        else:
            stamped = rows.filter(clicked_at__isnull=True).update(
                clicked_at=at,
                opened_at=Coalesce(F("opened_at"), Value(at, output_field=DateTimeField())),
            )
    return ReceiptResult(stamped=stamped == 1, event_recorded=tracked.recorded == 1)


# ---------------------------------------------------------------------------
# Tracked click links
# ---------------------------------------------------------------------------


def _is_trackable(target: str) -> bool:
    parts = urlsplit(target)
    return parts.scheme.lower() in TRACKED_SCHEMES and bool(parts.netloc)


def delivery_click_url(*, delivery_id: int, target: str) -> str:
    """The site-relative tracked link ``/r/<signed token>/`` for one delivery and target.

    Pure (no database). The token signs both the delivery id and the target, so the
    redirect can only lead where this function was told. Raises ValueError for a
    target that is not an absolute http(s) URL (use :func:`click_tracking_url`, which
    leaves those alone).
    """
    if not _is_trackable(target):
        raise ValueError(f"only absolute http(s) URLs can be tracked, not {target!r}")
    token = signing.dumps({"d": delivery_id, "u": target}, salt=CLICK_SALT, compress=True)
    return CLICK_PATH.format(token=token)


def public_base_url() -> str:
    """Where the public pages are reached from a phone (``settings.NOTIFYHUB_PUBLIC_URL``)."""
    return str(getattr(settings, "NOTIFYHUB_PUBLIC_URL", DEFAULT_PUBLIC_URL)).rstrip("/")


def click_tracking_url(*, delivery_id: int | None, target: str) -> str:
    """What the send step puts in a message's click action instead of ``target``.

    An absolute tracked link (``NOTIFYHUB_PUBLIC_URL`` + ``/r/<token>/``) for an http(s)
    target of a real delivery; ``target`` unchanged otherwise (deep links, empty, a test
    send without a ledger row). Pure: no database.
    """
    if delivery_id is None or not _is_trackable(target):
        return target
    return public_base_url() + delivery_click_url(delivery_id=delivery_id, target=target)


def click_token_verify(*, token: str) -> ClickTarget:
    """The delivery id and target a tracked link's token signs; ClickLinkError otherwise."""
    try:
        payload = signing.loads(token, salt=CLICK_SALT)
    except signing.BadSignature as exc:
        raise ClickLinkError("This link is not valid: it was changed or cut short.") from exc
    delivery_id = payload.get("d") if isinstance(payload, dict) else None
    target = payload.get("u") if isinstance(payload, dict) else None
    if not isinstance(delivery_id, int) or not isinstance(target, str) or not _is_trackable(target):
        raise ClickLinkError("This link is not valid: it was changed or cut short.")
    return ClickTarget(delivery_id=delivery_id, target=target)


def click_link_follow(*, token: str) -> str:
    """Verify a tracked link, record the click (first click wins), return where to go.

    Idempotent like :func:`receipt_record`. A valid link to a delivery that no longer
    exists (its run was deleted) still leads to its target, recording nothing; so does
    one whose click cannot be recorded (logged): the person who tapped gets where the
    message promised. Raises ClickLinkError (nothing recorded) for a tampered token.
    """
    click = click_token_verify(token=token)
    try:
        receipt_record(delivery_id=click.delivery_id, kind="clicked", properties={"source": "link"})
    except DeliveryNotFound:
        pass
    except ApplicationError as exc:
        logger.warning("click link for delivery %s not recorded: %s", click.delivery_id, exc.message)
    return click.target


# ---------------------------------------------------------------------------
# Conversions
# ---------------------------------------------------------------------------


def run_conversions(*, run_id: int, now: dt.datetime | None = None) -> int:
    """Stamp ``converted_at`` on the run's deliveries whose subscriber did the goal event.

    A delivery converts when its subscriber has an event named
    ``campaign.conversion_event`` at or after the delivery's moment and before the
    moment plus ``campaign.conversion_window_hours``. The moment is ``sent_at`` for a
    sent delivery and ``scheduled_for`` for a control-group row that is due (the time
    it would have been sent); other rows never convert. ``converted_at`` is the first
    such event's time.

    Set-based: one ``UPDATE … SET converted_at = (first event) WHERE converted_at IS
    NULL AND EXISTS (goal event in window)`` over the run (served by the
    (subscriber, name, occurred_at) index of events), after one query for the run.
    Idempotent: stamped rows are never touched again. Returns the rows stamped (0 for
    an unknown run or a campaign without a goal).
    """
    now = now or timezone.now()
    run = Run.objects.select_related("campaign").filter(pk=run_id).first()
    if run is None or not run.campaign.conversion_event:
        return 0
    window = dt.timedelta(hours=run.campaign.conversion_window_hours)
    moment = Coalesce(OuterRef("sent_at"), OuterRef("scheduled_for"), output_field=DateTimeField())
    until = ExpressionWrapper(moment + Value(window), output_field=DateTimeField())
    goals = Event.objects.filter(
        subscriber_id=OuterRef("subscriber_id"),
        name=run.campaign.conversion_event,
        occurred_at__gte=moment,
        occurred_at__lt=until,
    )
    reached = Q(is_control=False, status=Delivery.Status.SENT, sent_at__isnull=False) | Q(
        is_control=True, scheduled_for__lte=now
    )
    return (
        Delivery.objects.filter(reached, run_id=run.pk, converted_at__isnull=True)
        .filter(Exists(goals))
        .update(converted_at=Subquery(goals.order_by("occurred_at").values("occurred_at")[:1]))
    )


def conversions_update(*, now: dt.datetime | None = None) -> int:
    """Run :func:`run_conversions` for every real run whose attribution window is open.

    For beat (every few minutes): a run is considered while it is sending or paused,
    and after it finished for its campaign's window plus ``LATE_EVENT_SLACK`` (events
    sent late by offline clients). A loop over runs — a handful — each one set-based.
    Idempotent; returns the deliveries stamped in all.
    """
    now = now or timezone.now()
    oldest = now - MAX_CONVERSION_WINDOW - LATE_EVENT_SLACK
    runs = (
        Run.objects.filter(is_test=False)
        .exclude(campaign__conversion_event="")
        .exclude(status__in=[Run.Status.PENDING, Run.Status.PLANNING])
        .filter(
            Q(status__in=[Run.Status.SENDING, Run.Status.PAUSED])
            | Q(finished_at__gte=oldest)
            | Q(finished_at__isnull=True, created_at__gte=oldest)
        )
        .values_list("pk", "finished_at", "campaign__conversion_window_hours")
        .order_by("pk")
    )
    stamped = 0
    for run_id, finished_at, window_hours in runs:
        closes = None if finished_at is None else finished_at + dt.timedelta(hours=window_hours)
        if closes is not None and closes + LATE_EVENT_SLACK < now:
            continue
        stamped += run_conversions(run_id=run_id, now=now)
    return stamped
