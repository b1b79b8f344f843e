"""Reads for the delivery app: health, ledger counts, the device inbox, run progress."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Max, Min, Q
from django.utils import timezone
from django.utils.translation import gettext

from delivery.models import Delivery, Heartbeat, OutboxMessage, Run

HEARTBEAT_NAME = "beat-worker"
# How many messages the device inbox shows (the newest first).
INBOX_LIMIT = 100


@dataclass(frozen=True)
class PipelineHealth:
    last_beat_at: dt.datetime | None
    healthy: bool


def pipeline_health() -> PipelineHealth:
    """Whether beat and a worker ran the heartbeat recently (3 intervals, ≥ 60 s)."""
    row = Heartbeat.objects.filter(name=HEARTBEAT_NAME).only("beat_at").first()
    if row is None:
        return PipelineHealth(last_beat_at=None, healthy=False)
    window = dt.timedelta(seconds=max(60.0, 3 * settings.NOTIFYHUB_HEARTBEAT_SECONDS))
    return PipelineHealth(last_beat_at=row.beat_at, healthy=timezone.now() - row.beat_at <= window)


def run_delivery_counts(*, run_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Per run, how many ledger rows are in each status, e.g. ``{7: {"sent": 3, "failed": 1}}``.

    One aggregate query for any number of runs (an admin page's worth); runs without
    rows are absent.
    """
    ids = list(run_ids)
    counts: dict[int, dict[str, int]] = {}
    if not ids:
        return counts
    rows = (
        Delivery.objects.filter(run_id__in=ids)
        .order_by()
        .values_list("run_id", "status")
        .annotate(n=Count("pk"))
    )
    for run_id, status, n in rows:
        counts.setdefault(run_id, {})[status] = n
    return counts


def device_inbox(*, device_id: int, limit: int = INBOX_LIMIT) -> list[OutboxMessage]:
    """The newest messages the outbox backend stored for one device (one indexed query)."""
    return list(
        OutboxMessage.objects.filter(device_id=device_id)
        .select_related("delivery__run__campaign")
        .order_by("-created_at", "-id")[:limit]
    )


# ---------------------------------------------------------------------------
# A run's progress and results (the Run page and its JSON status view)
# ---------------------------------------------------------------------------

S = Delivery.Status
OPEN_STATUSES = frozenset({S.QUEUED, S.SENDING})
# The rate shown as "current": messages sent in this trailing window.
RATE_WINDOW = dt.timedelta(minutes=1)
CONTROL_KEY = "control"


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class VariantResult:
    """One arm of a run: a variant (``key`` "v<id>") or the control group ("control").

    Counted in deliveries (devices). ``base`` is what the rates are of: the sent
    deliveries of a variant; every delivery of the control group, which is never
    sent (its conversions count from the time it would have been). A subscriber's
    devices are all in one arm (assignment is by subscriber), so the arms compare.
    """

    key: str
    label: str
    is_control: bool
    deliveries: int
    sent: int
    opened: int
    clicked: int
    converted: int

    @property
    def base(self) -> int:
        return self.deliveries if self.is_control else self.sent

    @property
    def open_rate(self) -> float | None:
        return None if self.is_control else _rate(self.opened, self.sent)

    @property
    def click_rate(self) -> float | None:
        return None if self.is_control else _rate(self.clicked, self.sent)

    @property
    def conversion_rate(self) -> float | None:
        return _rate(self.converted, self.base)

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "label": self.label,
            "is_control": self.is_control,
            "deliveries": self.deliveries,
            "sent": self.sent,
            "opened": self.opened,
            "clicked": self.clicked,
            "converted": self.converted,
            "open_rate": self.open_rate,
            "click_rate": self.click_rate,
            "conversion_rate": self.conversion_rate,
        }


@dataclass(frozen=True)
class RunProgress:
    """Where a run stands: ledger counts, current rate, ETA and results per arm.

    ``counts`` has every ``Delivery.Status`` (zeros included); ``suppressed_by_reason``
    and ``failed_by_reason`` split those two. ``remaining`` = queued + sending.
    ``rate_per_minute`` is what was sent in the last minute; ``limit_per_minute`` the
    campaign's throttle capped by the provider-wide rate. ``eta_seconds`` =
    remaining ÷ min(rate, limit) while sending; before sending starts (or while
    nothing was sent in the last minute) ``expected_finish_at`` comes from the limit
    and the rows' ``scheduled_for`` instead. Both are None when unknown.
    """

    run_id: int
    status: str
    status_label: str
    error: str
    is_test: bool
    now: dt.datetime
    total: int
    counts: dict[str, int]
    suppressed_by_reason: dict[str, int]
    failed_by_reason: dict[str, int]
    remaining: int
    rate_per_minute: int
    limit_per_minute: float
    eta_seconds: float | None
    expected_finish_at: dt.datetime | None
    next_due_at: dt.datetime | None
    variants: list[VariantResult]

    @property
    def is_live(self) -> bool:
        """Still moving on its own: the page keeps refreshing."""
        return self.status in {"pending", "planning", "sending"}

    @property
    def done(self) -> int:
        """Rows with an outcome (sent, failed, suppressed, invalid token)."""
        return self.total - self.remaining

    @property
    def done_percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (times as ISO 8601)."""

        def iso(value: dt.datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "run_id": self.run_id,
            "status": self.status,
            "status_label": self.status_label,
            "error": self.error,
            "is_live": self.is_live,
            "now": iso(self.now),
            "total": self.total,
            "counts": self.counts,
            "suppressed_by_reason": self.suppressed_by_reason,
            "failed_by_reason": self.failed_by_reason,
            "remaining": self.remaining,
            "done": self.done,
            "done_percent": self.done_percent,
            "rate_per_minute": self.rate_per_minute,
            "limit_per_minute": self.limit_per_minute,
            "eta_seconds": self.eta_seconds,
            "expected_finish_at": iso(self.expected_finish_at),
            "next_due_at": iso(self.next_due_at),
            "variants": [v.as_dict() for v in self.variants],
        }


@dataclass
class _Arm:
    label: str
    is_control: bool
    deliveries: int = 0
    sent: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0


def run_limit_per_minute(*, throttle_per_minute: int | None) -> float:
    """Messages a minute a run can go at: its campaign's throttle, capped by the provider rate."""
    provider = float(settings.NOTIFYHUB_PROVIDER_RATE) * 60
    return min(float(throttle_per_minute), provider) if throttle_per_minute else provider


def run_progress(*, run_id: int, now: dt.datetime | None = None) -> RunProgress | None:
    """A run's progress (see RunProgress), or None for an unknown run.

    Two queries whatever the run's size: the run with its campaign, then ONE
    aggregate over its ledger rows grouped by (arm, status, reason) that yields the
    counts, the sends of the last minute, the opens/clicks/conversions per arm and
    the earliest and latest ``scheduled_for`` of the rows still to send. Served by the
    (run, status) index; cheap enough to poll every few seconds.
    """
    now = now or timezone.now()
    run = Run.objects.select_related("campaign").filter(pk=run_id).first()
    if run is None:
        return None
    rows = (
        Delivery.objects.filter(run_id=run.pk)
        .order_by()
        .values("is_control", "variant_id", "variant__name", "status", "reason")
        .annotate(
            n=Count("pk"),
            recent=Count("pk", filter=Q(sent_at__gte=now - RATE_WINDOW)),
            opened=Count("opened_at"),
            clicked=Count("clicked_at"),
            converted=Count("converted_at"),
            first_due=Min("scheduled_for"),
            last_due=Max("scheduled_for"),
            last_sent=Max("sent_at"),
        )
    )
    counts = dict.fromkeys(S.values, 0)
    suppressed: dict[str, int] = {}
    failed: dict[str, int] = {}
    arms: dict[str, _Arm] = {}
    recent = 0
    first_due: dt.datetime | None = None
    last_due: dt.datetime | None = None
    last_sent: dt.datetime | None = None
    for row in rows:
        status, n = row["status"], row["n"]
        counts[status] = counts.get(status, 0) + n
        reason = row["reason"] or "—"
        if status == S.SUPPRESSED:
            suppressed[reason] = suppressed.get(reason, 0) + n
        elif status == S.FAILED:
            failed[reason] = failed.get(reason, 0) + n
        recent += row["recent"]
        if status in OPEN_STATUSES:
            first_due = min(filter(None, (first_due, row["first_due"])), default=None)
            last_due = max(filter(None, (last_due, row["last_due"])), default=None)
        last_sent = max(filter(None, (last_sent, row["last_sent"])), default=None)
        if row["is_control"]:
            key, label = CONTROL_KEY, gettext("Control")
        elif row["variant_id"] is None:
            key, label = "v-", gettext("(variant deleted)")
        else:
            key, label = f"v{row['variant_id']}", row["variant__name"]
        arm = arms.setdefault(key, _Arm(label=label, is_control=row["is_control"]))
        arm.deliveries += n
        arm.sent += n if status == S.SENT else 0
        arm.opened += row["opened"]
        arm.clicked += row["clicked"]
        arm.converted += row["converted"]

    remaining = counts[S.QUEUED] + counts[S.SENDING]
    limit = run_limit_per_minute(throttle_per_minute=run.campaign.throttle_per_minute)
    eta: float | None = None
    finish: dt.datetime | None = None
    if remaining == 0:
        if counts[S.SENT] or run.finished_at:
            eta, finish = 0.0, run.finished_at or last_sent
    elif run.status in {Run.Status.PAUSED, Run.Status.CANCELLED}:
        pass  # not moving: no promise
    elif recent:
        eta = remaining / min(float(recent), limit) * 60
        finish = now + dt.timedelta(seconds=eta)
        if last_due is not None and last_due > finish:  # rows deferred (quiet hours, caps)
            finish = last_due
            eta = (finish - now).total_seconds()
    else:
        start = max(now, first_due) if first_due is not None else now
        finish = start + dt.timedelta(minutes=remaining / limit)
        if last_due is not None and last_due > finish:
            finish = last_due
        eta = None
    ordered = sorted(arms.items(), key=lambda item: (item[1].is_control, item[1].label, item[0]))
    return RunProgress(
        run_id=run.pk,
        status=run.status,
        status_label=str(run.get_status_display()),
        error=run.error,
        is_test=run.is_test,
        now=now,
        total=sum(counts.values()),
        counts=counts,
        suppressed_by_reason=dict(sorted(suppressed.items(), key=lambda kv: (-kv[1], kv[0]))),
        failed_by_reason=dict(sorted(failed.items(), key=lambda kv: (-kv[1], kv[0]))),
        remaining=remaining,
        rate_per_minute=recent,
        limit_per_minute=limit,
        eta_seconds=eta,
        expected_finish_at=finish,
        next_due_at=first_due,
        variants=[
            VariantResult(
                key=key,
                label=arm.label,
                is_control=arm.is_control,
                deliveries=arm.deliveries,
                sent=arm.sent,
                opened=arm.opened,
                clicked=arm.clicked,
                converted=arm.converted,
            )
            for key, arm in ordered
        ],
    )
