"""NotifyHub settings — everything comes from the environment, with working defaults.

Defaults are the *embedded* setup used by ``make run``: a SQLite file and a
filesystem Celery broker under ``var/``, and the ``outbox`` push backend. Production
sets ``DATABASE_URL`` (PostgreSQL), ``CELERY_BROKER_URL`` (Redis or RabbitMQ),
``SECRET_KEY`` and ``ALLOWED_HOSTS``. The README has the full table.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import environ
from celery.schedules import schedule
from django.core.exceptions import ImproperlyConfigured
from django.templatetags.static import static
from django.urls import reverse_lazy
from django.utils.translation import gettext_lazy as _
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# ---------------------------------------------------------------------------
# Core
# ---------------------------------------------------------------------------

# Off unless asked for: a forgotten variable must never expose debug pages.
DEBUG: bool = env.bool("DEBUG", default=False)

# Where the embedded defaults keep their files (SQLite database, broker folders).
VAR_DIR = Path(env.str("NOTIFYHUB_VAR_DIR", default=str(BASE_DIR / "var"))).resolve()

# A fixed key is tolerable only for local development; production must bring its own.
_DEV_SECRET_KEY = "django-insecure-notifyhub-development-only-never-use-in-production"  # noqa: S105
SECRET_KEY: str = env.str("SECRET_KEY", default="")
# True when a management command runs with a throwaway key (see manage.py): fine for
# migrate, check or makemigrations, never for serving; `check --deploy` fails on it.
SECRET_KEY_IS_EPHEMERAL = False
if not SECRET_KEY:
    if not DEBUG and env.bool("NOTIFYHUB_EPHEMERAL_SECRET_KEY", default=False):
        SECRET_KEY = secrets.token_urlsafe(50)
        SECRET_KEY_IS_EPHEMERAL = True
    elif not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. NotifyHub refuses to start with DEBUG off and no "
            "secret key, because sessions, CSRF tokens and preference-center links "
            "are signed with it. Set SECRET_KEY to a long random value (for example "
            'the output of: python -c "import secrets; print(secrets.token_urlsafe(50))"), '
            "or set DEBUG=true for local development only."
        )
    else:
        SECRET_KEY = _DEV_SECRET_KEY
elif not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak for DEBUG off: use a random value of at least 32 "
        "characters, not the development key."
    )

ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Unfold and modeltranslation must come before django.contrib.admin.
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.import_export",
    "modeltranslation",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "import_export",
    "django_celery_beat",
    "audiences",
    "campaigns",
    "delivery",
    # The project package itself: admin wiring for auth, management commands.
    "notifyhub",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "notifyhub.urls"
WSGI_APPLICATION = "notifyhub.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# ---------------------------------------------------------------------------
# Database
# ---------------------------------------------------------------------------

DATABASES: dict[str, dict[str, Any]] = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'notifyhub.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web, worker and beat share one file: WAL lets readers and one writer work at
    # once; IMMEDIATE transactions take the write lock up front so concurrent writers
    # wait (up to the timeout) instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Segment counts are short analytical queries over millions of rows: JIT
        # compilation costs ~100 ms per query and buys nothing at this size, and the
        # default 4 MB work_mem makes "did X at least N times" aggregates spill to disk.
        _pg_session = env.str("POSTGRES_SESSION_OPTIONS", default="-c jit=off -c work_mem=32MB")
        if _pg_session:
            DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", _pg_session)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The events index carries INCLUDE (subscriber) for PostgreSQL's index-only scans;
# SQLite (the embedded default) builds it without the extra column, which is fine.
SILENCED_SYSTEM_CHECKS = ["models.W040"]

# ---------------------------------------------------------------------------
# Auth, i18n, static files
# ---------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# The languages subscribers, campaigns and the preference center can use. Regional
# variants fall back to their base language, then to English (see
# ``audiences.languages.fallback_chain``).
LANGUAGES = [
    ("en", _("English")),
    ("es", _("Spanish")),
    ("fr", _("French")),
    ("de", _("German")),
    ("it", _("Italian")),
    ("pt", _("Portuguese")),
    ("pt-br", _("Brazilian Portuguese")),
    ("ar", _("Arabic")),
]
LANGUAGES_BIDI = ["ar", "he", "fa", "ur"]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

MODELTRANSLATION_DEFAULT_LANGUAGE = "en"
MODELTRANSLATION_FALLBACK_LANGUAGES: dict[str, tuple[str, ...]] = {
    "default": ("en",),
    "pt-br": ("pt", "en"),
}
# modeltranslation's tabs load jQuery (UI) from a CDN by default; serve local copies
# (static/vendor/jquery-ui, and the jQuery that ships with the admin).
JQUERY_UI_URL = "vendor/jquery-ui/jquery-ui.min.js"
JQUERY_URL = "admin/js/vendor/jquery/jquery.min.js"

MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media"))).resolve()

STATIC_URL = "/static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))).resolve()
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# In development whitenoise serves straight from the app folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# ---------------------------------------------------------------------------
# Cache (rate limits, live estimates). Shared by every process: Redis in production,
# a file cache under var/ for the embedded setup.
# ---------------------------------------------------------------------------

CACHES = {"default": env.cache_url("CACHE_URL", default=f"filecache://{VAR_DIR / 'cache'}")}

# ---------------------------------------------------------------------------
# Audiences: imports and the client API
# ---------------------------------------------------------------------------

# Launching a campaign whose audience is larger than this needs an Approver.
NOTIFYHUB_APPROVAL_THRESHOLD: int = env.int("NOTIFYHUB_APPROVAL_THRESHOLD", default=10_000)
NOTIFYHUB_IMPORT_MAX_BYTES: int = env.int("NOTIFYHUB_IMPORT_MAX_BYTES", default=100 * 1024 * 1024)
NOTIFYHUB_API_MAX_BODY_BYTES: int = env.int("NOTIFYHUB_API_MAX_BODY_BYTES", default=5 * 1024 * 1024)
NOTIFYHUB_API_EVENTS_PER_BATCH: int = 1000

# --- Client API (/api/v1/, audiences.api) ----------------------------------------
# django-ninja serves the OpenAPI docs (Swagger UI) from its own static files only
# when "ninja" is an installed app; otherwise it links a CDN.
INSTALLED_APPS += ["ninja"]
# Django refuses bodies over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB by default) with a
# bare 400 before any view runs; the API's own limit must be the one that answers
# (with a 413 naming it), so Django's limit is raised to at least the API's.
DATA_UPLOAD_MAX_MEMORY_SIZE: int = max(2_621_440, NOTIFYHUB_API_MAX_BODY_BYTES)
# How long a preference-center link handed out by the API stays valid (seconds).
NOTIFYHUB_PREFERENCE_LINK_MAX_AGE: int = env.int(
    "NOTIFYHUB_PREFERENCE_LINK_MAX_AGE", default=60 * 60 * 24 * 30
)
# API keys: last_used_at is written at most this often (seconds) per key.
# Preference center: after this many invalid-token hits from one address within the
# window (seconds), that address gets 429 for a while (link guessing).
NOTIFYHUB_PREFERENCE_BAD_TOKEN_LIMIT: int = env.int("NOTIFYHUB_PREFERENCE_BAD_TOKEN_LIMIT", default=20)
NOTIFYHUB_PREFERENCE_BAD_TOKEN_WINDOW: int = env.int("NOTIFYHUB_PREFERENCE_BAD_TOKEN_WINDOW", default=600)
NOTIFYHUB_API_KEY_TOUCH_SECONDS: int = 60
# --- end of client API block ---------------------------------------------------------

# ---------------------------------------------------------------------------
# Security (production refuses insecure defaults; see the README)
# ---------------------------------------------------------------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the admin's JS reads it
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)

# ---------------------------------------------------------------------------
# Celery
# ---------------------------------------------------------------------------

CELERY_BROKER_DIR = VAR_DIR / "celery"
_broker_default = "filesystem://"
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default=_broker_default)
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport: messages are files, shared by every process on
    # this machine. Paths must be absolute so that web, worker and beat agree
    # whatever their working directory. It does not redeliver a task whose worker
    # died, which is why due work always lives in database rows.
    for _sub in ("in", "processed", "control", "results"):
        (CELERY_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(CELERY_BROKER_DIR / "in"),
        "data_folder_out": str(CELERY_BROKER_DIR / "in"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(CELERY_BROKER_DIR / "control"),
        "polling_interval": 0.2,
    }
    # One machine, one small worker: a thread pool shuts down promptly on Ctrl-C
    # (honcho signals the whole process group, which would kill prefork children
    # mid-handshake and can leave the parent waiting on a lock they held).
    CELERY_WORKER_POOL = "threads"
    _result_default = f"file://{CELERY_BROKER_DIR / 'results'}"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    _result_default = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
# Results are only kept for tasks that ask for them (``ignore_result=False``, e.g.
# the health-check ping); everything else records its outcome in the database.
CELERY_RESULT_BACKEND: str = env.str("CELERY_RESULT_BACKEND", default=_result_default) or None  # type: ignore[assignment]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 3600
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=14 * 60)
# Ack after the task ran, so a crash mid-task redelivers it (tasks are idempotent).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = "default"
# Four queues that scale apart: planning (heavy SQL), sending (provider I/O),
# events (client API ingestion) and everything else.
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name), routing_key=name) for name in ("default", "plan", "send", "events")
)
CELERY_TASK_ROUTES = {
    "delivery.tasks.plan_*": {"queue": "plan"},
    "delivery.tasks.send_*": {"queue": "send"},
    "audiences.tasks.ingest_*": {"queue": "events"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
NOTIFYHUB_HEARTBEAT_SECONDS = env.float("NOTIFYHUB_HEARTBEAT_SECONDS", default=10.0)
# --- Delivery engine (delivery.planning / dispatch / sending) -----------------------
# Frequency caps per subscriber, counted in their own time zone (0 = no cap).
# Transactional topics are exempt; topics may add their own (Topic.max_per_day/week).
NOTIFYHUB_CAP_PER_DAY: int = env.int("NOTIFYHUB_CAP_PER_DAY", default=3)
NOTIFYHUB_CAP_PER_WEEK: int = env.int("NOTIFYHUB_CAP_PER_WEEK", default=10)
# The app's default quiet hours, local to each subscriber ("HH:MM-HH:MM"; empty = none).
# A campaign may override them; a subscriber's own window always applies too.
NOTIFYHUB_QUIET_HOURS: str = env.str("NOTIFYHUB_QUIET_HOURS", default="22:00-08:00")
# Messages per second to the push provider, shared by every worker (FCM allows
# 600,000 a minute per project).
NOTIFYHUB_PROVIDER_RATE: float = env.float("NOTIFYHUB_PROVIDER_RATE", default=10_000.0)
# A batch claimed for sending and not finished after this long is claimed again.
NOTIFYHUB_SEND_LEASE_SECONDS: int = env.int("NOTIFYHUB_SEND_LEASE_SECONDS", default=300)
# Transient failures (5xx, timeouts) are retried with backoff this many times in all.
NOTIFYHUB_SEND_MAX_ATTEMPTS: int = env.int("NOTIFYHUB_SEND_MAX_ATTEMPTS", default=5)
# Where end users reach this server (tracked click links in messages: /r/<token>/).
NOTIFYHUB_PUBLIC_URL: str = env.str("NOTIFYHUB_PUBLIC_URL", default="http://localhost:8000")
# How often beat runs dispatch_due (seconds).
# Whole seconds: django-celery-beat stores schedule entries as integer intervals.
NOTIFYHUB_DISPATCH_SECONDS: int = max(1, env.int("NOTIFYHUB_DISPATCH_SECONDS", default=2))
# --- end of delivery engine block ---------------------------------------------------

CELERY_BEAT_SCHEDULE = {
    # Lets the dashboard (and the smoke test) see that beat and a worker are alive.
    "notifyhub-heartbeat": {
        "task": "delivery.tasks.heartbeat",
        "schedule": schedule(NOTIFYHUB_HEARTBEAT_SECONDS),
        "options": {"expires": NOTIFYHUB_HEARTBEAT_SECONDS * 3},
    },
    # Delivery engine: claim due rows and enqueue their sends; stamp conversions.
    "delivery-dispatch-due": {
        "task": "delivery.tasks.dispatch_due",
        "schedule": schedule(NOTIFYHUB_DISPATCH_SECONDS),
        "options": {"expires": NOTIFYHUB_DISPATCH_SECONDS * 2},
    },
    "delivery-update-conversions": {
        "task": "delivery.tasks.update_conversions",
        "schedule": schedule(300),
        "options": {"expires": 300},
    },
    # Client API (audiences.tasks): slide the 30-day session window for everyone;
    # ingestion keeps the touched subscribers current between runs.
    "audiences-recompute-sessions-30d": {
        "task": "audiences.tasks.subscribers_recompute_sessions_30d",
        "schedule": schedule(60 * 60),
        "options": {"expires": 60 * 60},
    },
}

# ---------------------------------------------------------------------------
# Push delivery
# ---------------------------------------------------------------------------

NOTIFYHUB_PUSH_BACKEND: str = env.str("NOTIFYHUB_PUSH_BACKEND", default="outbox")
if NOTIFYHUB_PUSH_BACKEND not in {"outbox", "fcm"}:
    raise ImproperlyConfigured(
        f"NOTIFYHUB_PUSH_BACKEND={NOTIFYHUB_PUSH_BACKEND!r} is not a push backend; "
        "use 'outbox' (development: messages are stored and shown in the admin) "
        "or 'fcm' (Firebase Cloud Messaging)."
    )
FIREBASE_CREDENTIALS: str = env.str("FIREBASE_CREDENTIALS", default="")
FCM_ENDPOINT: str = env.str("FCM_ENDPOINT", default="https://fcm.googleapis.com")
if NOTIFYHUB_PUSH_BACKEND == "fcm" and not FIREBASE_CREDENTIALS:
    raise ImproperlyConfigured(
        "NOTIFYHUB_PUSH_BACKEND=fcm needs FIREBASE_CREDENTIALS: the path of the "
        "Firebase service-account JSON file."
    )

# ---------------------------------------------------------------------------
# Admin (django-unfold)
# ---------------------------------------------------------------------------


def _perm(codename: str) -> Any:
    return lambda request: request.user.has_perm(codename)


UNFOLD: dict[str, Any] = {
    "SITE_TITLE": "NotifyHub",
    "SITE_HEADER": "NotifyHub",
    "SITE_SUBHEADER": _("Push notifications, done right"),
    "SITE_SYMBOL": "campaign",
    "SITE_FAVICONS": [
        {"rel": "icon", "type": "image/svg+xml", "href": lambda request: static("notifyhub/favicon.svg")},
    ],
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "ENVIRONMENT": "notifyhub.admin_site.environment_callback",
    "DASHBOARD_CALLBACK": "notifyhub.admin_site.dashboard_callback",
    "EXTENSIONS": {
        "modeltranslation": {
            "flags": {
                "en": "EN",
                "es": "ES",
                "fr": "FR",
                "de": "DE",
                "it": "IT",
                "pt": "PT",
                "pt-br": "PT-BR",
                "ar": "AR",
            },
        },
    },
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": False,
        "navigation": [
            {
                "title": _("Audiences"),
                "separator": True,
                "items": [
                    {"title": _("Dashboard"), "icon": "dashboard", "link": reverse_lazy("admin:index")},
                    {
                        "title": _("Subscribers"),
                        "icon": "group",
                        "link": reverse_lazy("admin:audiences_subscriber_changelist"),
                        "permission": _perm("audiences.view_subscriber"),
                    },
                    {
                        "title": _("Devices"),
                        "icon": "smartphone",
                        "link": reverse_lazy("admin:audiences_device_changelist"),
                        "permission": _perm("audiences.view_device"),
                    },
                    {
                        "title": _("Consent records"),
                        "icon": "verified_user",
                        "link": reverse_lazy("admin:audiences_consentrecord_changelist"),
                        "permission": _perm("audiences.view_consentrecord"),
                    },
                ],
            },
            {
                "title": _("Campaigns"),
                "separator": True,
                "items": [
                    {
                        "title": _("Campaigns"),
                        "icon": "campaign",
                        "link": reverse_lazy("admin:campaigns_campaign_changelist"),
                        "permission": _perm("campaigns.view_campaign"),
                    },
                    {
                        "title": _("Topics"),
                        "icon": "label",
                        "link": reverse_lazy("admin:audiences_topic_changelist"),
                        "permission": _perm("audiences.view_topic"),
                    },
                    {
                        "title": _("Test devices"),
                        "icon": "phonelink_ring",
                        "link": reverse_lazy("admin:campaigns_testdevice_changelist"),
                        "permission": _perm("campaigns.view_testdevice"),
                    },
                    {
                        "title": _("Status history"),
                        "icon": "history",
                        "link": reverse_lazy("admin:campaigns_campaignstatuschange_changelist"),
                        "permission": _perm("campaigns.view_campaignstatuschange"),
                    },
                ],
            },
            {
                "title": _("Delivery"),
                "separator": True,
                "items": [
                    {
                        "title": _("Runs"),
                        "icon": "play_circle",
                        "link": reverse_lazy("admin:delivery_run_changelist"),
                        "permission": _perm("delivery.view_run"),
                    },
                    {
                        "title": _("Deliveries"),
                        "icon": "receipt_long",
                        "link": reverse_lazy("admin:delivery_delivery_changelist"),
                        "permission": _perm("delivery.view_delivery"),
                    },
                    {
                        "title": _("Device inbox"),
                        "icon": "inbox",
                        "link": reverse_lazy("admin:delivery_outboxmessage_changelist"),
                        "permission": _perm("delivery.view_outboxmessage"),
                    },
                    {
                        "title": _("Worker health"),
                        "icon": "monitor_heart",
                        "link": reverse_lazy("admin:delivery_heartbeat_changelist"),
                        "permission": _perm("delivery.view_heartbeat"),
                    },
                ],
            },
            {
                "title": _("Schedules"),
                "separator": True,
                "items": [
                    {
                        "title": _("Periodic tasks"),
                        "icon": "task_alt",
                        "link": reverse_lazy("admin:django_celery_beat_periodictask_changelist"),
                        "permission": _perm("django_celery_beat.view_periodictask"),
                    },
                    {
                        "title": _("Clocked"),
                        "icon": "alarm",
                        "link": reverse_lazy("admin:django_celery_beat_clockedschedule_changelist"),
                        "permission": _perm("django_celery_beat.view_clockedschedule"),
                    },
                    {
                        "title": _("Crontabs"),
                        "icon": "update",
                        "link": reverse_lazy("admin:django_celery_beat_crontabschedule_changelist"),
                        "permission": _perm("django_celery_beat.view_crontabschedule"),
                    },
                    {
                        "title": _("Intervals"),
                        "icon": "timer",
                        "link": reverse_lazy("admin:django_celery_beat_intervalschedule_changelist"),
                        "permission": _perm("django_celery_beat.view_intervalschedule"),
                    },
                    {
                        "title": _("Solar events"),
                        "icon": "wb_sunny",
                        "link": reverse_lazy("admin:django_celery_beat_solarschedule_changelist"),
                        "permission": _perm("django_celery_beat.view_solarschedule"),
                    },
                ],
            },
            {
                "title": _("Settings"),
                "separator": True,
                "items": [
                    {
                        "title": _("Users"),
                        "icon": "person",
                        "link": reverse_lazy("admin:auth_user_changelist"),
                        "permission": _perm("auth.view_user"),
                    },
                    {
                        "title": _("Groups"),
                        "icon": "groups",
                        "link": reverse_lazy("admin:auth_group_changelist"),
                        "permission": _perm("auth.view_group"),
                    },
                ],
            },
        ],
    },
}

# --- CSV import (audiences.csv_import, admin "Imports") ----------------------------
# Files up to this size are checked and imported inside the admin request (about a
# second of work); bigger ones run as Celery tasks with a progress bar.
NOTIFYHUB_IMPORT_SYNC_MAX_BYTES: int = env.int("NOTIFYHUB_IMPORT_SYNC_MAX_BYTES", default=1024 * 1024)
UNFOLD["SIDEBAR"]["navigation"][0]["items"].append(
    {
        "title": _("Imports"),
        "icon": "upload_file",
        "link": reverse_lazy("admin:audiences_importjob_changelist"),
        "permission": _perm("audiences.view_importjob"),
    }
)
# --- end of CSV import block ------------------------------------------------------

# --- Client API: admin sidebar (audiences.admin.api_keys) --------------------------
# A section before "Settings" (the last one): API keys and the read-only event log.
UNFOLD["SIDEBAR"]["navigation"].insert(
    len(UNFOLD["SIDEBAR"]["navigation"]) - 1,
    {
        "title": _("Client API"),
        "separator": True,
        "items": [
            {
                "title": _("API keys"),
                "icon": "key",
                "link": reverse_lazy("admin:audiences_apikey_changelist"),
                "permission": _perm("audiences.view_apikey"),
            },
            {
                "title": _("Events"),
                "icon": "bolt",
                "link": reverse_lazy("admin:audiences_event_changelist"),
                "permission": _perm("audiences.view_event"),
            },
        ],
    },
)
# --- end of client API sidebar block -------------------------------------------------

# --- Segments: admin sidebar (audiences.admin.segments) ----------------------------
UNFOLD["SIDEBAR"]["navigation"][0]["items"].append(
    {
        "title": _("Segments"),
        "icon": "filter_alt",
        "link": reverse_lazy("admin:audiences_segment_changelist"),
        "permission": _perm("audiences.view_segment"),
    }
)
# --- end of segments sidebar block ---------------------------------------------------

# ---------------------------------------------------------------------------
# Imports/exports and logging
# ---------------------------------------------------------------------------

IMPORT_EXPORT_SKIP_ADMIN_ACTION_EXPORT_UI = False
# We escape formulae ourselves (audiences.csv_safety); the library's setting only
# strips a leading "=".
IMPORT_EXPORT_ESCAPE_FORMULAE_ON_EXPORT = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Port used by ``make run`` (read by the Procfile through the environment).
PORT: int = env.int("PORT", default=8000)
