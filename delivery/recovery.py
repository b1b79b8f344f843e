"""What a person does to a run that needs attention: retry its failed rows, resume it.

Both are one atomic action on the locked run row that returns early when nothing
changes and writes a LogEntry (the run's admin History) with the acting user. The
rows they put back to ``queued`` are due now; ``dispatch_due`` picks them up on its
next tick, and ``send_batch`` re-checks suppression (opt-out, caps, quiet hours) as
for any other row.
"""

from __future__ import annotations

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from delivery.models import Delivery, Run
from notifyhub.exceptions import ApplicationError

R = Run.Status
D = Delivery.Status
# A run whose failed rows may be sent again: it was sending, or is done.
RETRYABLE = frozenset({R.SENDING, R.PARTIALLY_FAILED, R.COMPLETED})


class RunNotFound(ApplicationError):
    """No run has this id (any more)."""


class RunStateError(ApplicationError):
    """The run is in a status that does not allow this; the message says why and what to do."""


def _locked_run(run_id: int) -> Run:
    # of=("self",): lock the run only, not its campaign (joined for the log's text).
    run = Run.objects.select_for_update(of=("self",)).select_related("campaign").filter(pk=run_id).first()
    if run is None:
        raise RunNotFound(f"Run {run_id} does not exist (any more).")
    return run


def _log(*, run: Run, actor: AbstractBaseUser | AnonymousUser | None, message: str) -> None:
    if actor is None or actor.pk is None:
        return
    LogEntry.objects.log_actions(
        user_id=actor.pk, queryset=[run], action_flag=CHANGE, change_message=message, single_object=True
    )


@transaction.atomic
def run_retry_failed(*, run_id: int, actor: AbstractBaseUser | AnonymousUser | None) -> int:
    """Put the run's ``failed`` rows back in the queue and the run back to sending.

    Only ``failed`` rows move (invalid tokens, suppressed and sent rows stay as they
    are): status → queued, attempts reset, due now, reason, error and claim cleared.
    The run becomes ``sending`` again (``finished_at`` cleared) so that dispatch picks
    the rows up. Returns how many rows were re-queued.

    Transaction: one, on the locked run row; a LogEntry by ``actor`` is written in it.
    Idempotent: a second call finds no failed rows, changes nothing and returns 0.
    Raises RunStateError for a test run (send a new test) or a run that is pending,
    planning, paused (resume it first) or cancelled.
    """
    run = _locked_run(run_id)
    if run.is_test:
        raise RunStateError("A test send is not retried: send a new test from the campaign page.")
    if run.status not in RETRYABLE:
        hint = " Resume it first." if run.status == R.PAUSED else ""
        raise RunStateError(
            f"This run is {run.get_status_display().lower()}: "
            f"its failed deliveries cannot be retried now.{hint}"
        )
    requeued = Delivery.objects.filter(run_id=run.pk, status=D.FAILED).update(
        status=D.QUEUED,
        attempts=0,
        scheduled_for=timezone.now(),
        claimed_at=None,
        reason="",
        error="",
    )
    if not requeued:
        return 0
    Run.objects.filter(pk=run.pk).update(status=R.SENDING, finished_at=None)
    run.status, run.finished_at = R.SENDING, None
    _log(run=run, actor=actor, message=f"Retried {requeued} failed deliveries.")
    return requeued


@transaction.atomic
def run_resume(*, run_id: int, actor: AbstractBaseUser | AnonymousUser | None) -> Run:
    """Resume a run paused by a payload or authentication error, once it has been fixed.

    The run goes back to ``sending`` and its error is cleared: its queued rows are
    dispatched again (rendered from the variant as it is now). Rows that failed
    meanwhile stay failed: "Retry failed" sends those.

    Transaction: one, on the locked run row; a LogEntry by ``actor`` is written in it.
    Idempotent: a run that is already sending is returned unchanged. Raises
    RunStateError for a run in any other status.
    """
    run = _locked_run(run_id)
    if run.status == R.SENDING:
        return run
    if run.status != R.PAUSED:
        raise RunStateError(
            f"This run is {run.get_status_display().lower()}; only a paused run can be resumed."
        )
    Run.objects.filter(pk=run.pk).update(status=R.SENDING, error="")
    run.status, run.error = R.SENDING, ""
    _log(run=run, actor=actor, message="Resumed.")
    return run
