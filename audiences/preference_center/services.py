"""The writes the preference center makes, each one atomic action on one subscriber.

Every consent change goes through
:func:`audiences.services.preferences.subscriber_update_preferences`, which appends
one ``ConsentRecord`` per changed value (source ``preference_center``, the hashed
address and user agent from the caller's ``ConsentContext``). These functions add
what the page needs around it: the subscriber must still be live (not erased) when
the row is locked, and the time zone — a profile field, not consent — changes in the
same transaction as the quiet hours it gives meaning to. Saving the choices form runs
in the view's transaction, which locked the row when it read the page state
(``selectors.page_state(lock=True)``); the others lock it themselves.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction

from audiences.models import ConsentRecord, Subscriber, Topic
from audiences.preference_center.pickers import is_timezone
from audiences.preference_center.selectors import PageState
from audiences.services.preferences import ConsentContext, PreferenceError, subscriber_update_preferences
from notifyhub.exceptions import ApplicationError


class SubscriberGone(ApplicationError):
    """The subscriber was erased (or deleted) after the page was opened."""


@dataclass(frozen=True)
class SaveResult:
    records: list[ConsentRecord]
    timezone_changed: bool
    language: str  # the subscriber's language after the save

    @property
    def changed(self) -> bool:
        return bool(self.records) or self.timezone_changed


def _lock_live(subscriber: Subscriber) -> Subscriber:
    locked = Subscriber.objects.select_for_update().filter(pk=subscriber.pk, erased_at__isnull=True).first()
    if locked is None:
        raise SubscriberGone("This subscriber no longer exists.")
    return locked


def preference_center_save(
    *,
    locked: PageState,
    context: ConsentContext,
    push_opt_in: bool,
    topics: dict[Topic, bool],
    frequency_limit: str,
    quiet_hours: tuple[dt.time, dt.time] | None,
    timezone: str,
    language: str,
) -> SaveResult:
    """Store everything the preferences form holds.

    Transaction: runs in the caller's, which must have read ``locked`` with
    ``selectors.page_state(lock=True)``: the subscriber row is locked (``SELECT … FOR
    UPDATE``) and was not erased when it was, so the comparisons below are against
    the stored values and nothing else can change them before the commit. (The page's
    POST reads that state anyway, to validate the form against the active topics;
    reading it again here would only add a round trip.)
    Idempotent: values equal to the stored ones are skipped; saving the same form
    twice writes no consent records and returns ``changed == False``.
    """
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError(
            "preference_center_save() needs the transaction that locked the subscriber."
        )
    subscriber = Subscriber(pk=locked.subscriber_id, timezone=locked.timezone, language=locked.language)
    timezone_changed = timezone != locked.timezone
    if timezone_changed:
        if not is_timezone(timezone):
            raise PreferenceError(f"{timezone!r} is not an IANA time zone.")
        subscriber.timezone = timezone
        subscriber.save(update_fields=["timezone", "updated_at"])
    records = subscriber_update_preferences(
        subscriber=subscriber,
        context=context,
        push_opt_in=push_opt_in,
        topics=topics,
        frequency_limit=frequency_limit,
        quiet_hours=quiet_hours,
        language=language,
    )
    return SaveResult(records=records, timezone_changed=timezone_changed, language=subscriber.language)


@transaction.atomic
def preference_center_unsubscribe_all(
    *, subscriber: Subscriber, context: ConsentContext
) -> list[ConsentRecord]:
    """Push off and every active topic opted out, in one step.

    Transaction: one atomic block with the row locked; ``SubscriberGone`` if erased.
    Idempotent: a second call finds nothing to change, writes nothing and returns ``[]``.
    """
    _lock_live(subscriber)
    topics = dict.fromkeys(Topic.objects.filter(is_active=True), False)
    return subscriber_update_preferences(
        subscriber=subscriber, context=context, push_opt_in=False, topics=topics
    )


@transaction.atomic
def preference_center_pause(
    *, subscriber: Subscriber, context: ConsentContext, paused_until: dt.datetime | None
) -> list[ConsentRecord]:
    """Pause everything until ``paused_until``, or resume now with ``None``.

    Transaction: one atomic block with the row locked; ``SubscriberGone`` if erased.
    Resuming when not paused writes nothing; pausing again moves the end and is recorded.
    """
    locked = _lock_live(subscriber)
    if paused_until is None and not locked.is_paused:
        paused_until = locked.paused_until  # an old, already-past pause: leave the row alone
    return subscriber_update_preferences(subscriber=subscriber, context=context, paused_until=paused_until)
