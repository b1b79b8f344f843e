"""The delivery engine end to end, with real processes, reconciled against the FCM stub's log.

Every test launches campaigns the way a marketer does (``campaign_launch``: the beat
task), and real ``celery beat`` and ``celery worker`` processes (``tests.processes``)
plan, dispatch and send them through the ``fcm`` backend — the firebase-admin SDK
talking HTTP to the loopback FCM stub, itself a separate process. The test then
reconciles three records of what happened: the ledger (Delivery rows), the devices,
and the stub's log of every message it accepted (and of every request, with its
arrival time and outcome).

PostgreSQL (the test database, committed rows: transactional tests) and Redis
(broker and cache) are required: skipped locally without them, failed with CI=true.
``test_redis_restart_mid_run`` runs a private ``redis-server`` so that restarting it
disturbs nothing else on the machine.
"""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection, transaction
from django.utils import timezone

from audiences.models import Device, Subscriber, Topic, TopicPreference
from audiences.services.preferences import ConsentContext, subscriber_update_preferences
from campaigns.models import Campaign
from campaigns.services import campaign_launch
from delivery.backends import DATA_DELIVERY_ID
from delivery.models import Delivery, Heartbeat, Run
from delivery.planning import assignment_bucket, assignment_for
from delivery.selectors import HEARTBEAT_NAME
from tests.factories import CampaignFactory, TopicFactory, VariantFactory
from tests.fcm import FcmStubHandle, fcm_stub_process
from tests.processes import (
    STARTUP_TIMEOUT,
    Managed,
    Processes,
    RedisServer,
    celery_environ,
    test_database_url,
    with_url_path,
)
from tests.services import require, require_postgres, require_redis

pytestmark = pytest.mark.integration

D = Delivery.Status
R = Run.Status
REDIS_DB = 12  # broker and cache of these tests (13: campaign scheduling, 14: smoke, 15: tests.services)
DONE = (R.COMPLETED, R.PARTIALLY_FAILED)
BATCH = 500  # delivery.backends.MAX_BATCH
# Whole seconds: django-celery-beat stores intervals as integers (0.5 would become 0).
DISPATCH_SECONDS = "1"
RUN_TIMEOUT = 60.0

GREETING = {"en": "Hi", "de": "Hallo", "pt": "Olá"}
# The subscribers' languages, and what a variant written in en/de/pt serves them.
SERVED = {"en": "en", "de": "de", "fr": "en", "pt-br": "pt"}
PLATFORMS = (Device.Platform.ANDROID, Device.Platform.IOS, Device.Platform.WEB)


# ---------------------------------------------------------------------------
# Fixtures: the stub (one process for the module), the engine (per test)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stub_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FcmStubHandle]:
    with fcm_stub_process(tmp_path_factory.mktemp("fcm-stub")) as handle:
        yield handle


@pytest.fixture
def stub(stub_process: FcmStubHandle) -> FcmStubHandle:
    """The module's stub with an empty log and no faults."""
    stub_process.reset()
    return stub_process


@dataclass
class Engine:
    """Worker and beat processes sending through the stub; ``start_*`` add more."""

    procs: Processes
    stub: FcmStubHandle
    env: dict[str, str]
    workers: list[Managed] = field(default_factory=list)

    def start_worker(self, *, queues: Iterable[str] | None = None, concurrency: int = 2) -> Managed:
        kwargs: dict[str, Any] = {"concurrency": concurrency}
        if queues is not None:
            kwargs["queues"] = queues
        worker = self.procs.start_worker(**kwargs)
        self.workers.append(worker)
        return worker

    def start_beat(self) -> Managed:
        return self.procs.start_beat()

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = RUN_TIMEOUT) -> None:
        self.procs.wait_for(what, check, timeout)

    def wait_until_up(self) -> None:
        """Beat → broker → worker → database: a heartbeat row proves all of it works."""
        self.wait_for(
            "the heartbeat (beat and a worker up)",
            lambda: Heartbeat.objects.filter(name=HEARTBEAT_NAME).exists(),
            STARTUP_TIMEOUT,
        )

    def wait_for_runs(self, campaigns: Iterable[Campaign], statuses: Iterable[str] = DONE) -> list[Run]:
        wanted, chosen = list(campaigns), set(statuses)

        def finished() -> bool:
            runs = [_run_or_none(c) for c in wanted]
            return all(run is not None and run.status in chosen for run in runs)

        self.wait_for(f"the runs of {len(wanted)} campaign(s) to be {sorted(chosen)}", finished)
        runs = [_run_or_none(c) for c in wanted]
        return [run for run in runs if run is not None]


EngineFactory = Callable[..., Engine]


@pytest.fixture
def engine_factory(transactional_db: None, tmp_path: Path, stub: FcmStubHandle) -> Iterator[EngineFactory]:
    """``engine_factory(workers=1, beats=1, concurrency=2, redis_url=None, **env)`` → a started Engine.

    Without ``redis_url``: the suite's Redis (database ``REDIS_DB``, flushed before and
    after). Every process ends with the test.
    """
    require_postgres()
    shared_redis = require_redis()
    require(
        connection.vendor == "postgresql",
        "worker and beat share the test database only on PostgreSQL: run with DATABASE_URL=postgres://…",
    )
    started: list[Processes] = []
    flush = redis.Redis.from_url(with_url_path(shared_redis, REDIS_DB))
    flush.flushdb()

    def start(
        *,
        workers: int = 1,
        beats: int = 1,
        concurrency: int = 2,
        queues: Iterable[str] | None = None,
        redis_url: str | None = None,
        **env: str,
    ) -> Engine:
        url = redis_url or with_url_path(shared_redis, REDIS_DB)
        settings_env = {
            "NOTIFYHUB_DISPATCH_SECONDS": DISPATCH_SECONDS,
            "NOTIFYHUB_QUIET_HOURS": "",  # only the quiet-hours test wants them
            "CACHE_URL": url,  # provider rate limit and backoff shared by every process
            **stub.environ(),
            **env,
        }
        directory = tmp_path / f"engine{len(started)}"
        directory.mkdir()
        procs = Processes(
            directory,
            celery_environ(directory, broker_url=url, database_url=test_database_url(), **settings_env),
        )
        started.append(procs)
        engine = Engine(procs=procs, stub=stub, env=procs.env)
        for _ in range(workers):
            engine.start_worker(queues=queues, concurrency=concurrency)
        for _ in range(beats):
            engine.start_beat()
        return engine

    try:
        yield start
    finally:
        for procs in started:
            procs.stop_all(graceful=False)  # the state is in the database: no need to wait
        flush.flushdb()
        flush.close()


# ---------------------------------------------------------------------------
# Data: built set-based (bulk_create), then launched through the real service
# ---------------------------------------------------------------------------


def make_audience(
    n: int,
    *,
    prefix: str,
    languages: tuple[str, ...] = ("en",),
    zone: str = "UTC",
    second_device_every: int = 0,
    **fields: Any,
) -> list[Subscriber]:
    """``n`` subscribers (first names ``F<prefix><i>``) with one device each (two for every k-th)."""
    subscribers = Subscriber.objects.bulk_create(
        [
            Subscriber(
                external_id=f"{prefix}-{i:05d}",
                first_name=f"F{prefix}{i}",
                language=languages[i % len(languages)],
                timezone=zone,
                country="DE",
                **fields,
            )
            for i in range(n)
        ],
        batch_size=1000,
    )
    devices = [
        Device(subscriber_id=s.pk, token=f"{prefix}-{s.pk}-0", platform=PLATFORMS[i % len(PLATFORMS)])
        for i, s in enumerate(subscribers)
    ]
    if second_device_every:
        devices += [
            Device(subscriber_id=s.pk, token=f"{prefix}-{s.pk}-1", platform=Device.Platform.ANDROID)
            for i, s in enumerate(subscribers)
            if i % second_device_every == 0
        ]
    Device.objects.bulk_create(devices, batch_size=1000)
    return subscribers


def make_campaign(*, topic: Topic | None = None, variants: Iterable[str] = ("A",), **fields: Any) -> Campaign:
    """A one-off "send now" campaign (not launched) whose variants greet by first name in en/de/pt."""
    campaign: Campaign = CampaignFactory(
        topic=topic or TopicFactory(), schedule_type=Campaign.ScheduleType.NOW, **fields
    )
    for name in variants:
        VariantFactory(
            campaign=campaign,
            name=name,
            **{
                f"title_{language}": f"{greeting} {{{{ subscriber.first_name }}}} ({name})"
                for language, greeting in GREETING.items()
            },
            **{f"body_{language}": f"{language} body {name}" for language in GREETING},
        )
    return campaign


def launch(campaign: Campaign) -> Campaign:
    launched = campaign_launch(campaign=campaign, actor=None)
    assert launched.status == Campaign.Status.SCHEDULED
    return launched


def _run_or_none(campaign: Campaign) -> Run | None:
    return Run.objects.filter(campaign=campaign, is_test=False).first()


def expected_title(row: Delivery) -> str:
    assert row.variant is not None
    return f"{GREETING[row.language]} {row.subscriber.first_name} ({row.variant.name})"


# ---------------------------------------------------------------------------
# Reconciliation: ledger ⇄ stub log
# ---------------------------------------------------------------------------


@dataclass
class Reconciled:
    rows: dict[int, Delivery]  # the runs' ledger rows by id
    messages: dict[int, list[dict[str, Any]]]  # accepted messages by delivery id
    per_token: Counter[str]
    stray: list[dict[str, Any]]  # accepted messages that belong to none of the rows

    @property
    def accepted(self) -> int:
        return sum(self.per_token.values())

    @property
    def duplicates(self) -> int:
        """Messages the stub accepted more than once for the same ledger row (run, device)."""
        return sum(len(got) - 1 for got in self.messages.values())

    def by_status(self) -> Counter[tuple[str, str]]:
        return Counter((row.status, row.reason) for row in self.rows.values())


def reconcile(stub: FcmStubHandle, runs: Iterable[Run]) -> Reconciled:
    rows = {
        row.pk: row
        for row in Delivery.objects.filter(run__in=list(runs)).select_related(
            "device", "subscriber", "variant"
        )
    }
    messages: dict[int, list[dict[str, Any]]] = defaultdict(list)
    per_token: Counter[str] = Counter()
    stray = []
    for entry in stub.log():
        message = entry["message"]
        per_token[message["token"]] += 1
        delivery_id = int(message.get("data", {}).get(DATA_DELIVERY_ID, 0))
        if delivery_id in rows:
            messages[delivery_id].append(message)
        else:
            stray.append(message)
    return Reconciled(rows=rows, messages=dict(messages), per_token=per_token, stray=stray)


def assert_ledger_matches_log(result: Reconciled, *, max_duplicates: int = 0) -> None:
    """Sent rows ⇄ accepted messages, one for one (up to ``max_duplicates`` extra), nothing else."""
    assert not result.stray, f"the stub accepted messages of no ledger row: {result.stray[:3]}"
    sent = {pk for pk, row in result.rows.items() if row.status == D.SENT}
    unsent_with_messages = set(result.messages) - sent
    assert not unsent_with_messages, [
        (pk, result.rows[pk].status, result.rows[pk].reason) for pk in sorted(unsent_with_messages)[:10]
    ]
    missing = sent - set(result.messages)
    assert not missing, f"{len(missing)} rows are 'sent' but the stub never accepted their message"
    for pk in sent:
        row, got = result.rows[pk], result.messages[pk]
        assert {m["token"] for m in got} == {row.device.token}
        assert row.provider_message_id and row.sent_at is not None
    assert result.duplicates <= max_duplicates, f"{result.duplicates} duplicates > {max_duplicates}"


def assert_nothing_open(result: Reconciled) -> None:
    still = Counter(row.status for row in result.rows.values() if row.status in (D.QUEUED, D.SENDING))
    assert not still, f"rows still open: {still}"


# ---------------------------------------------------------------------------
# A campaign to a few thousand devices
# ---------------------------------------------------------------------------


def test_a_campaign_to_3000_devices_completes_exactly_once_with_reasons(
    engine_factory: EngineFactory,
) -> None:
    """Every eligible device gets one message in its variant, language and name; the rest have reasons.

    The send queue is consumed only once every row is claimed and the audience then
    changed (opt-outs, a dead device…): the send-time re-check must catch all of it.
    """
    engine = engine_factory(queues=("default", "plan", "events"))  # no sending yet
    topic = TopicFactory()
    people = make_audience(2_800, prefix="big", languages=tuple(SERVED), second_device_every=14)
    assert Device.objects.count() == 3_000
    # Not in the audience at planning time: no row, no message.
    unreachable = make_audience(20, prefix="out", push_opt_in=False)
    campaign = make_campaign(
        topic=topic, variants=("A", "B"), ab_mode=Campaign.AbMode.SPLIT, control_percent=10
    )
    engine.wait_until_up()
    campaign = launch(campaign)

    engine.wait_for(
        "every row claimed (no send worker yet)",
        lambda: (
            Run.objects.filter(campaign=campaign, status=R.SENDING).exists()
            and not Delivery.objects.filter(run__campaign=campaign, status=D.QUEUED).exists()
        ),
    )
    run = Run.objects.get(campaign=campaign)
    claimed = Delivery.objects.filter(run=run, status=D.SENDING)
    # Between claim and send, the audience changes (committed before the sends reserve).
    ids = [s.pk for s in people]
    changes = {
        "push_opt_out": ids[0:700:7],
        "topic_opt_out": ids[1:700:7],
        "device_inactive": ids[2:700:7],
        "subscriber_paused": ids[3:700:7],
        "subscriber_erased": ids[4:700:7],
    }
    now = timezone.now()
    Subscriber.objects.filter(pk__in=changes["push_opt_out"]).update(push_opt_in=False)
    TopicPreference.objects.bulk_create(
        [TopicPreference(subscriber_id=pk, topic=topic, opted_in=False) for pk in changes["topic_opt_out"]]
    )
    Device.objects.filter(subscriber_id__in=changes["device_inactive"]).update(
        is_active=False, invalidated_at=now, invalidation_reason=Device.InvalidationReason.UNREGISTERED
    )
    Subscriber.objects.filter(pk__in=changes["subscriber_paused"]).update(
        paused_until=now + dt.timedelta(days=1)
    )
    Subscriber.objects.filter(pk__in=changes["subscriber_erased"]).update(erased_at=now)
    changed = {pk: reason for reason, pks in changes.items() for pk in pks}
    assert claimed.count() + Delivery.objects.filter(run=run, reason="control").count() == 3_000

    engine.start_worker(queues=("send",), concurrency=2)
    [run] = engine.wait_for_runs([campaign])
    assert run.status == R.COMPLETED, run.error
    assert run.audience_size == 3_000
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.COMPLETED

    result = reconcile(engine.stub, [run])
    assert_nothing_open(result)
    assert_ledger_matches_log(result, max_duplicates=0)
    variants = list(campaign.variants.order_by("name", "id"))
    assignment = assignment_for(campaign=campaign, variants=variants)
    unreachable_tokens = set(
        Device.objects.filter(subscriber__in=unreachable).values_list("token", flat=True)
    )
    assert not unreachable_tokens & set(result.per_token)
    reasons: Counter[str] = Counter()
    for pk, row in result.rows.items():
        bucket = assignment_bucket(campaign_id=campaign.pk, subscriber_id=row.subscriber_id)
        if bucket < assignment.control:
            assert (row.status, row.reason, row.is_control) == (D.SUPPRESSED, "control", True)
        elif row.subscriber_id in changed:
            assert (row.status, row.reason) == (D.SUPPRESSED, changed[row.subscriber_id]), pk
        else:
            assert row.status == D.SENT, (pk, row.status, row.reason, row.error)
            expected_variant = next(v for bound, v in assignment.ranges if bucket < bound)
            assert row.variant_id == expected_variant.pk
            assert row.language == SERVED[row.subscriber.language]
            [message] = result.messages[pk]
            assert message["notification"]["title"] == expected_title(row)
            assert message["notification"]["body"] == f"{row.language} body {row.variant.name}"
            assert message["android"]["collapse_key"] == f"nh-{run.pk}"
        reasons[row.reason if row.status == D.SUPPRESSED else row.status] += 1
    # Every eligible device exactly once; every other one with its reason.
    assert result.duplicates == 0
    assert reasons["sent"] == len(result.per_token)
    assert reasons["control"] > 200 and reasons["sent"] > 2_000
    assert set(reasons) == {"sent", "control", *changes}, reasons
    # Both variants and every served language went out.
    sent_rows = [row for row in result.rows.values() if row.status == D.SENT]
    assert {row.variant.name for row in sent_rows if row.variant} == {"A", "B"}
    assert {row.language for row in sent_rows} == set(SERVED.values())


# ---------------------------------------------------------------------------
# Faults: a worker killed, Redis restarted, the provider throttling and failing
# ---------------------------------------------------------------------------


def _accepted(stub: FcmStubHandle) -> int:
    return int(stub.stats()["accepted"])


def test_kill_9_a_worker_mid_run_loses_nothing(engine_factory: EngineFactory) -> None:
    """SIGKILL to a worker (and its pool) mid-run: its rows return after the lease; another one finishes.

    Duplicates are possible only for the messages that were in flight in the killed
    worker, and the ledger knows every message the stub accepted.
    """
    n = 1_500
    engine = engine_factory(
        concurrency=1,  # one batch in flight in the victim at most
        NOTIFYHUB_SEND_LEASE_SECONDS="5",
        NOTIFYHUB_PROVIDER_RATE="500",  # a batch a second: time to kill in the middle
    )
    [victim] = engine.workers
    make_audience(n, prefix="kill")
    campaign = make_campaign()
    engine.stub.set_faults(latency_ms=100)  # each batch is in flight for a while
    engine.wait_until_up()
    campaign = launch(campaign)

    engine.wait_for("the first messages", lambda: _accepted(engine.stub) >= 300, 30)
    engine.procs.kill(victim)
    accepted_at_kill = _accepted(engine.stub)
    in_flight = Delivery.objects.filter(run__campaign=campaign, status=D.SENDING).count()
    assert accepted_at_kill < n, "the run finished before the kill"
    engine.start_worker()
    [run] = engine.wait_for_runs([campaign])

    assert run.status == R.COMPLETED, run.error
    result = reconcile(engine.stub, [run])
    assert_nothing_open(result)
    assert result.by_status() == Counter({(D.SENT, ""): n})
    assert len(result.per_token) == n  # nothing lost
    # At most what the killed worker had in flight: one batch.
    assert result.duplicates <= min(in_flight, BATCH), (result.duplicates, in_flight)
    assert_ledger_matches_log(result, max_duplicates=in_flight)
    print(
        f"\nkill -9: accepted at kill {accepted_at_kill}, in flight {in_flight}, "
        f"duplicates {result.duplicates}"
    )


def test_redis_restart_mid_run_loses_nothing(engine_factory: EngineFactory, tmp_path: Path) -> None:
    """The broker and cache (a private Redis) restart empty mid-run: the run completes, nothing lost."""
    require(RedisServer.available(), "redis-server is not installed")
    with RedisServer(tmp_path) as private:
        engine = engine_factory(
            redis_url=private.url(0),
            NOTIFYHUB_SEND_LEASE_SECONDS="5",
            NOTIFYHUB_PROVIDER_RATE="300",
        )
        # Celery 5.7/kombu 5.7 sometimes give up on a lost Redis with unacked (acks_late)
        # messages: "Unrecoverable error: AttributeError(… 'hostname')", and the worker
        # exits. In production a process manager starts it again; here the test does.
        for process in engine.procs.processes.values():
            engine.procs.supervise(process)
        make_audience(1_500, prefix="redis")
        campaign = make_campaign()
        engine.stub.set_faults(latency_ms=50)
        engine.wait_until_up()
        campaign = launch(campaign)
        engine.wait_for("the first messages", lambda: _accepted(engine.stub) >= 300, 30)
        private.restart(down_for=1.0)
        assert _accepted(engine.stub) < 1_500, "the run finished before the restart"
        [run] = engine.wait_for_runs([campaign])

    assert run.status == R.COMPLETED, run.error
    result = reconcile(engine.stub, [run])
    assert_nothing_open(result)
    assert result.by_status() == Counter({(D.SENT, ""): 1_500})
    assert len(result.per_token) == 1_500
    assert_ledger_matches_log(result, max_duplicates=2 * BATCH)
    # The worker did lose the broker (and the tasks queued in it came back as rows).
    assert engine.procs.count_in_logs("Connection to broker lost", "worker1") >= 1
    reclaimed = engine.procs.count_in_logs("outlived their send lease", "worker1")
    respawns = {name: p.respawns for name, p in engine.procs.processes.items() if p.respawns}
    print(f"\nredis restart: duplicates {result.duplicates}, lease reclaims {reclaimed}, respawns {respawns}")


def test_429_retry_after_and_30_percent_5xx(engine_factory: EngineFactory) -> None:
    """429 with Retry-After: nothing reaches the provider before it. 5xx: retried with backoff.

    The first 40 requests get 429 (Retry-After: 3 s); 30 % of the tokens fail their
    first request with 503 or 500. All 400 are delivered, once, in at most 1.5
    requests per recipient.
    """
    n, retry_after = 400, 3.0
    engine = engine_factory()
    people = make_audience(n, prefix="flaky")
    tokens = sorted(Device.objects.filter(subscriber__in=people).values_list("token", flat=True))
    failing = tokens[::10] + tokens[3::10] + tokens[6::10]  # 30 %
    engine.stub.set_faults(
        tokens={
            t: {"error": "UNAVAILABLE" if i % 2 else "INTERNAL", "times": 1} for i, t in enumerate(failing)
        },
        quota={"requests": 40, "retry_after": int(retry_after)},
    )
    campaign = make_campaign()
    engine.wait_until_up()
    campaign = launch(campaign)
    [run] = engine.wait_for_runs([campaign])

    assert run.status == R.COMPLETED, run.error
    result = reconcile(engine.stub, [run])
    assert_nothing_open(result)
    assert result.by_status() == Counter({(D.SENT, ""): n})
    assert_ledger_matches_log(result, max_duplicates=0)
    requests = sorted(engine.stub.requests(), key=lambda r: r["t"])
    statuses = Counter(r["status"] for r in requests)
    assert statuses[429] == 40
    assert statuses[500] + statuses[503] >= 0.25 * n
    # No request before Retry-After: the first batch (all n rows, one send_each) got the
    # 429s; every later request comes at least Retry-After after the last 429 answer.
    assert len(requests) > n
    first_batch, later = requests[:n], requests[n:]
    assert {r["token"] for r in first_batch} == set(tokens)
    last_429 = max(r["t"] for r in first_batch if r["status"] == 429)
    earliest_retry = min(r["t"] for r in later)
    assert earliest_retry >= last_429 + retry_after, earliest_retry - last_429
    # Each throttled token retried only after its own Retry-After, too.
    by_token: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in requests:
        by_token[r["token"]].append(r)
    for seen in by_token.values():
        for before, after in itertools.pairwise(seen):
            if before["status"] == 429:
                assert after["t"] >= before["t"] + retry_after
    assert len(requests) <= 1.5 * n, len(requests)
    attempts = Counter(row.attempts for row in result.rows.values())
    assert attempts[1] >= 0.25 * n  # the 5xx rows: one failed attempt each (a 429 is not an attempt)
    print(
        f"\n429/5xx: {len(requests)} requests for {n} recipients ({len(requests) / n:.2f}x), {dict(statuses)}"
    )


def test_two_beat_processes_start_and_dispatch_each_run_once(engine_factory: EngineFactory) -> None:
    engine = engine_factory(beats=2, workers=2)
    make_audience(600, prefix="beats", second_device_every=6)
    campaigns = [make_campaign(), make_campaign()]
    engine.wait_until_up()
    campaigns = [launch(c) for c in campaigns]
    runs = engine.wait_for_runs(campaigns)

    for campaign in campaigns:
        assert Run.objects.filter(campaign=campaign).count() == 1
    assert all(run.status == R.COMPLETED for run in runs)
    result = reconcile(engine.stub, runs)
    assert_nothing_open(result)
    assert result.by_status() == Counter({(D.SENT, ""): 2 * 700})
    assert_ledger_matches_log(result, max_duplicates=0)
    # Each device got one message per campaign; both beats were dispatching all along.
    assert set(result.per_token.values()) == {2}
    for beat in ("beat1", "beat2"):
        assert engine.procs.count_in_logs("Sending due task delivery-dispatch-due", beat) >= 2, beat


# ---------------------------------------------------------------------------
# The rules: consent, caps, quiet hours, dead tokens, payload errors
# ---------------------------------------------------------------------------


def test_an_opt_out_committed_mid_run_stops_every_later_batch(engine_factory: EngineFactory) -> None:
    """Opt-outs through the preference service while the run sends: no later batch reaches them."""
    engine = engine_factory(NOTIFYHUB_PROVIDER_RATE="150")  # batches of ≤ 150 a second
    topic = TopicFactory()
    people = make_audience(900, prefix="optout")
    campaign = make_campaign(topic=topic)
    engine.wait_until_up()
    campaign = launch(campaign)
    engine.wait_for("the first batches", lambda: _accepted(engine.stub) >= 150, 30)

    # The last 40 subscribers leave push, the 40 before them the campaign's topic, in one
    # commit; what is still queued at that commit must never go out.
    leaving_push, leaving_topic = people[-40:], people[-80:-40]
    push_ids = {s.pk for s in leaving_push}
    context = ConsentContext(source="api", source_detail="integration test")
    with transaction.atomic():
        for subscriber in sorted(leaving_push + leaving_topic, key=lambda s: s.pk):
            if subscriber.pk in push_ids:
                subscriber_update_preferences(subscriber=subscriber, context=context, push_opt_in=False)
            else:
                subscriber_update_preferences(subscriber=subscriber, context=context, topics={topic: False})
        queued_at_commit = dict(
            Delivery.objects.filter(
                run__campaign=campaign, status=D.QUEUED, subscriber__in=leaving_push + leaving_topic
            ).values_list("pk", "subscriber_id")
        )
    accepted_at_commit = _accepted(engine.stub)
    [run] = engine.wait_for_runs([campaign])

    assert run.status == R.COMPLETED
    assert accepted_at_commit >= 150
    assert len(queued_at_commit) == 80, "the opt-outs were not committed mid-run"
    result = reconcile(engine.stub, [run])
    assert_nothing_open(result)
    assert_ledger_matches_log(result, max_duplicates=0)
    for pk in queued_at_commit:
        row = result.rows[pk]
        reason = "push_opt_out" if row.subscriber_id in push_ids else "topic_opt_out"
        assert (row.status, row.reason) == (D.SUPPRESSED, reason), pk
        assert pk not in result.messages
    # Everyone else got their one message.
    stayed = [row for row in result.rows.values() if row.pk not in queued_at_commit]
    assert {row.status for row in stayed} == {D.SENT}
    assert len(result.messages) == len(stayed)


def test_caps_hold_with_two_campaigns_sending_to_the_same_people(engine_factory: EngineFactory) -> None:
    """NOTIFYHUB_CAP_PER_DAY=1 and two campaigns at once, two workers: each person gets one message."""
    engine = engine_factory(workers=2, NOTIFYHUB_CAP_PER_DAY="1", NOTIFYHUB_PROVIDER_RATE="200")
    people = make_audience(400, prefix="caps", second_device_every=5)
    campaigns = [make_campaign(cap_policy=Campaign.CapPolicy.DROP) for _ in range(2)]
    engine.wait_until_up()
    campaigns = [launch(c) for c in campaigns]

    def settled() -> bool:
        rows = Delivery.objects.filter(run__campaign__in=campaigns)
        due = rows.filter(status=D.QUEUED, scheduled_for__lte=timezone.now())
        return rows.count() == 2 * 480 and not rows.filter(status=D.SENDING).exists() and not due.exists()

    engine.wait_for("both runs to settle (sent, capped or waiting)", settled)
    runs = [Run.objects.get(campaign=c) for c in campaigns]
    result = reconcile(engine.stub, runs)
    assert_ledger_matches_log(result, max_duplicates=0)
    runs_per_person: dict[int, set[int]] = defaultdict(set)
    for pk in result.messages:
        row = result.rows[pk]
        runs_per_person[row.subscriber_id].add(row.run_id)
    assert {len(got) for got in runs_per_person.values()} == {1}, "a person got both campaigns"
    assert set(runs_per_person) == {s.pk for s in people}, "someone got nothing"
    # Every other row: dropped by the cap, or — when the other campaign's row for that
    # person was in flight at the time — waiting for a re-check a minute later; never
    # silently. (A second device can wait too: one run to two devices is one message.)
    outcomes = result.by_status()
    assert outcomes[(D.SENT, "")] >= 400
    assert set(outcomes) <= {(D.SENT, ""), (D.SUPPRESSED, "cap_daily"), (D.QUEUED, "capped_daily")}, outcomes
    assert outcomes[(D.SUPPRESSED, "cap_daily")] + outcomes[(D.QUEUED, "capped_daily")] >= 400


def _window_around(moment: dt.datetime, zone: str, hours: int) -> tuple[dt.time, dt.time, dt.datetime]:
    """A quiet window from ``hours`` before to ``hours`` after ``moment`` in ``zone`` (whole minutes),
    and the UTC instant it ends."""
    local = moment.astimezone(zoneinfo.ZoneInfo(zone)).replace(second=0, microsecond=0)
    start, end = local - dt.timedelta(hours=hours), local + dt.timedelta(hours=hours)
    return start.time(), end.time(), end.astimezone(dt.UTC)


def test_quiet_hours_defer_to_the_end_of_the_window(engine_factory: EngineFactory) -> None:
    """Inside the campaign's quiet hours (Tokyo) or their own (some in UTC): queued until the window ends."""
    engine = engine_factory()
    now = timezone.now()
    campaign_start, campaign_end, tokyo_end = _window_around(now, "Asia/Tokyo", 2)  # far from UTC's now
    own_start, own_end, own_end_utc = _window_around(now, "UTC", 1)
    awake = make_audience(100, prefix="awake")
    tokyo = make_audience(100, prefix="tokyo", zone="Asia/Tokyo")
    own = make_audience(100, prefix="own", quiet_hours_start=own_start, quiet_hours_end=own_end)
    campaign = make_campaign(quiet_hours_start=campaign_start, quiet_hours_end=campaign_end)
    engine.wait_until_up()
    campaign = launch(campaign)
    engine.wait_for(
        "the awake ones' messages",
        lambda: Delivery.objects.filter(run__campaign=campaign, status=D.SENT).count() == 100,
    )
    run = Run.objects.get(campaign=campaign)
    result = reconcile(engine.stub, [run])
    assert_ledger_matches_log(result, max_duplicates=0)
    by_subscriber = {row.subscriber_id: row for row in result.rows.values()}
    assert {by_subscriber[s.pk].status for s in awake} == {D.SENT}
    for group, end in ((tokyo, tokyo_end), (own, own_end_utc)):
        for subscriber in group:
            row = by_subscriber[subscriber.pk]
            assert (row.status, row.reason) == (D.QUEUED, "quiet_hours_deferred")
            # The window's end (planning counts the local time in whole seconds).
            assert end <= row.scheduled_for < end + dt.timedelta(seconds=1)
            assert row.pk not in result.messages
    assert Run.objects.get(pk=run.pk).status == R.SENDING  # it waits for them


def test_dead_tokens_deactivate_their_devices_and_are_never_targeted_again(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory()
    people = make_audience(300, prefix="dead")
    devices = list(Device.objects.filter(subscriber__in=people).order_by("pk"))
    faults = {
        **{d.token: "UNREGISTERED" for d in devices[0:30]},
        **{d.token: "SENDER_ID_MISMATCH" for d in devices[30:40]},
        **{d.token: "INVALID_TOKEN" for d in devices[40:50]},
    }
    engine.stub.set_faults(tokens=faults)
    campaign = make_campaign()
    engine.wait_until_up()
    campaign = launch(campaign)
    [run] = engine.wait_for_runs([campaign])

    assert run.status == R.COMPLETED  # dead tokens are not failures
    result = reconcile(engine.stub, [run])
    assert_nothing_open(result)
    assert_ledger_matches_log(result, max_duplicates=0)
    assert result.by_status() == Counter(
        {
            (D.SENT, ""): 250,
            (D.INVALID_TOKEN, "unregistered"): 30,
            (D.INVALID_TOKEN, "sender_id_mismatch"): 10,
            (D.INVALID_TOKEN, "invalid_argument"): 10,
        }
    )
    reasons = dict(Device.objects.filter(is_active=False).values_list("token", "invalidation_reason"))
    assert set(reasons) == set(faults)
    assert Counter(reasons.values()) == Counter(
        {
            Device.InvalidationReason.UNREGISTERED: 30,
            Device.InvalidationReason.SENDER_MISMATCH: 10,
            "invalid": 10,
        }
    )
    # A later campaign never targets them (and the stub is no longer asked about them).
    engine.stub.reset()
    second = launch(make_campaign())
    [later] = engine.wait_for_runs([second])
    assert Delivery.objects.filter(run=later).count() == 250
    assert not set(faults) & set(reconcile(engine.stub, [later]).per_token)
    assert not [r for r in engine.stub.requests() if r["token"] in faults]


def test_a_payload_error_pauses_the_run_and_deactivates_nothing(engine_factory: EngineFactory) -> None:
    engine = engine_factory()
    make_audience(300, prefix="payload")
    engine.stub.set_faults(token_prefixes={"payload-": "INVALID_PAYLOAD"})
    campaign = make_campaign()
    engine.wait_until_up()
    campaign = launch(campaign)
    [run] = engine.wait_for_runs([campaign], statuses=[R.PAUSED])

    assert "INVALID_ARGUMENT" in run.error and "Fix the variant" in run.error
    assert not Device.objects.filter(is_active=False).exists()
    assert engine.stub.stats()["accepted"] == 0
    requests = len(engine.stub.requests())
    engine.wait_for(
        "the paused run's rows back in the queue",
        lambda: not Delivery.objects.filter(run=run, status=D.SENDING).exists(),
        15,
    )
    rows = Counter(Delivery.objects.filter(run=run).values_list("status", flat=True))
    assert rows == Counter({D.QUEUED: 300})
    # Paused means paused: a few more dispatch ticks send nothing.
    ticks = engine.procs.count_in_logs("delivery.tasks.dispatch_due[")
    engine.wait_for(
        "three more dispatch ticks",
        lambda: engine.procs.count_in_logs("delivery.tasks.dispatch_due[") >= ticks + 6,
        15,
    )
    assert len(engine.stub.requests()) == requests
    assert Run.objects.get(pk=run.pk).status == R.PAUSED
