"""Planning a run: one set-based pass from a pending Run to its Delivery rows.

``run_plan`` evaluates the campaign's audience in SQL, joins it to the subscribers'
active devices, and inserts one ledger row per (run, device) with a single
``INSERT … SELECT … ON CONFLICT (run, device) DO NOTHING``. Nothing loops over
subscribers in Python; Python only builds two small maps that the statement joins
or inlines, without reading the audience:

- per **time zone** (every IANA zone, ~600 rows, joined as a ``VALUES`` list): when
  the message is due there (the run's occurrence, or the campaign's local date and
  time in that zone with its late policy), moved out of the campaign's (or the
  app's) quiet hours — exact and DST-aware, computed with ``zoneinfo`` — or
  suppressed (``local_time_passed``, ``quiet_hours``). A subscriber whose zone is
  not a known name gets the campaign's ``fallback_timezone`` row.
- per **language** (the site's languages, a ``CASE``): the language each variant
  serves it in, along the campaign's fallback chain.

Variant or control is picked by a hash of (campaign, subscriber) computed in SQL
(``assignment_bucket`` is the same function in Python), so every device of a
subscriber gets the same variant, and each run of a recurring campaign puts the
same people in its control group.

Who does what about quiet hours:

- planning (here): the campaign's window (or the app default,
  ``NOTIFYHUB_QUIET_HOURS``) per time zone, exactly; then the subscriber's own
  window, in SQL — skip: suppressed with ``quiet_hours``; defer: moved by the
  wall-clock distance to the window's end (off by the clock change on a DST night;
  and a deferral that ends inside the campaign's window stays there);
- sending: re-checks every window at send time (preferences change after planning)
  and defers again if needed, so neither approximation sends inside quiet hours.

Frequency caps, paused subscribers and consent changes after planning are the send
step's business: planning only targets who is reachable now.

``ab_mode`` "test then winner": only the control group and the test sample
(``ab_test_percent`` of the rest) are planned here; the held-back buckets are not.
The winner step can plan them with this same statement, the winner for every
non-control bucket: rows already planned are skipped by the unique (run, device).
"""

from delivery.planning.assignment import BUCKETS, Assignment, assignment_bucket, assignment_for
from delivery.planning.services import run_plan, run_plan_pending
from delivery.planning.statement import REASON_CONTROL
from delivery.planning.timing import (
    LATE_GRACE,
    REASON_LATE,
    REASON_QUIET,
    Timing,
    in_window,
    parse_window,
    zone_timing,
)
from delivery.suppression import campaign_quiet_window

__all__ = [
    "BUCKETS",
    "LATE_GRACE",
    "REASON_CONTROL",
    "REASON_LATE",
    "REASON_QUIET",
    "Assignment",
    "Timing",
    "assignment_bucket",
    "assignment_for",
    "campaign_quiet_window",
    "in_window",
    "parse_window",
    "run_plan",
    "run_plan_pending",
    "zone_timing",
]
