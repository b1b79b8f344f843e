"""Settings come from the environment, with working defaults and a safe production mode.

Each case imports ``notifyhub.settings`` in a fresh interpreter with a controlled
environment, because settings are evaluated once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STRONG_KEY = "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz"

PROBE = """
import json
from django.conf import settings
import django
django.setup()
db = settings.DATABASES["default"]
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "SECRET_KEY": settings.SECRET_KEY,
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "ENGINE": db["ENGINE"],
    "NAME": str(db["NAME"]),
    "HOST": db.get("HOST", ""),
    "OPTIONS": {k: str(v) for k, v in db.get("OPTIONS", {}).items()},
    "BROKER": settings.CELERY_BROKER_URL,
    "BROKER_OPTIONS": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
    "QUEUES": sorted(q.name for q in settings.CELERY_TASK_QUEUES),
    "ACCEPT": settings.CELERY_ACCEPT_CONTENT,
    "TIME_LIMIT": settings.CELERY_TASK_TIME_LIMIT,
    "SCHEDULER": settings.CELERY_BEAT_SCHEDULER,
    "PUSH": settings.NOTIFYHUB_PUSH_BACKEND,
    "FCM_ENDPOINT": settings.FCM_ENDPOINT,
    "FIREBASE_CREDENTIALS": settings.FIREBASE_CREDENTIALS,
    "PORT": settings.PORT,
    "LANGUAGES": [code for code, _ in settings.LANGUAGES],
    "JQUERY_UI_URL": settings.JQUERY_UI_URL,
}))
"""


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        "PATH": os.environ.get("PATH", ""),
        "DJANGO_SETTINGS_MODULE": "notifyhub.settings",
        "NOTIFYHUB_VAR_DIR": str(tmp_path / "var"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def settings_for(tmp_path: Path, **env: str) -> dict[str, object]:
    result = load_settings(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_defaults_are_the_embedded_setup(tmp_path: Path) -> None:
    s = settings_for(tmp_path, DEBUG="true")
    var = tmp_path / "var"
    assert s["DEBUG"] is True
    assert s["ENGINE"] == "django.db.backends.sqlite3"
    assert s["NAME"] == str(var / "notifyhub.sqlite3")
    assert "journal_mode=WAL" in s["OPTIONS"]["init_command"]  # type: ignore[index]
    assert s["BROKER"] == "filesystem://"
    opts = s["BROKER_OPTIONS"]
    assert isinstance(opts, dict)
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        assert Path(opts[key]).is_absolute()
        assert Path(opts[key]).is_relative_to(var)
        assert Path(opts[key]).is_dir()
    assert str(s["RESULT_BACKEND"]).startswith("file://")
    assert s["QUEUES"] == ["default", "events", "plan", "send"]
    assert s["ACCEPT"] == ["json"]
    assert isinstance(s["TIME_LIMIT"], int) and s["TIME_LIMIT"] > 0
    assert s["SCHEDULER"] == "django_celery_beat.schedulers:DatabaseScheduler"
    assert s["PUSH"] == "outbox"
    assert s["FCM_ENDPOINT"] == "https://fcm.googleapis.com"
    assert s["PORT"] == 8000
    assert "localhost" in s["ALLOWED_HOSTS"]  # type: ignore[operator]
    assert {"en", "es", "fr", "de", "pt", "ar"} <= set(s["LANGUAGES"])  # type: ignore[arg-type]
    assert not str(s["JQUERY_UI_URL"]).startswith(("http", "//"))


def test_environment_overrides(tmp_path: Path) -> None:
    creds = tmp_path / "sa.json"
    creds.write_text("{}")
    s = settings_for(
        tmp_path,
        DEBUG="false",
        SECRET_KEY=STRONG_KEY,
        ALLOWED_HOSTS="push.example.com,admin.example.com",
        DATABASE_URL="postgres://app:pw@db.internal:5433/notifyhub",
        CELERY_BROKER_URL="redis://cache.internal:6379/2",
        NOTIFYHUB_PUSH_BACKEND="fcm",
        FIREBASE_CREDENTIALS=str(creds),
        FCM_ENDPOINT="http://127.0.0.1:9999",
        PORT="9001",
    )
    assert s["DEBUG"] is False
    assert s["SECRET_KEY"] == STRONG_KEY
    assert s["ALLOWED_HOSTS"] == ["push.example.com", "admin.example.com"]
    assert s["ENGINE"] == "django.db.backends.postgresql"
    assert s["NAME"] == "notifyhub"
    assert s["HOST"] == "db.internal"
    assert s["BROKER"] == "redis://cache.internal:6379/2"
    assert s["RESULT_BACKEND"] == "redis://cache.internal:6379/2"
    assert s["PUSH"] == "fcm"
    assert s["FIREBASE_CREDENTIALS"] == str(creds)
    assert s["FCM_ENDPOINT"] == "http://127.0.0.1:9999"
    assert s["PORT"] == 9001


def test_debug_defaults_to_off_and_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    result = load_settings(tmp_path)  # neither DEBUG nor SECRET_KEY
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr
    assert "DEBUG=true" in result.stderr  # tells the reader what to do


@pytest.mark.parametrize(
    "weak", ["short", "django-insecure-notifyhub-development-only-never-use-in-production"]
)
def test_production_refuses_weak_secret_key(tmp_path: Path, weak: str) -> None:
    result = load_settings(tmp_path, DEBUG="false", SECRET_KEY=weak)
    assert result.returncode != 0
    assert "SECRET_KEY is too weak" in result.stderr


def _manage(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "NOTIFYHUB_VAR_DIR": str(tmp_path / "var")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_admin_commands_run_without_secret_key_but_say_so(tmp_path: Path) -> None:
    """migrate/check need no real secret: a throwaway key, and a warning naming it."""
    result = _manage(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    assert "notifyhub.W001" in result.stderr
    assert "SECRET_KEY is not set" in result.stderr


def test_deploy_check_and_serving_refuse_without_secret_key(tmp_path: Path) -> None:
    deploy = _manage(tmp_path, "check", "--deploy")
    assert deploy.returncode != 0
    assert "notifyhub.E001" in deploy.stderr
    serve = _manage(tmp_path, "runserver", "--noreload", "127.0.0.1:0")
    assert serve.returncode != 0
    assert "SECRET_KEY is not set" in serve.stderr
    # gunicorn and celery import the settings the same way as load_settings().
    wsgi = subprocess.run(
        [sys.executable, "-c", "import notifyhub.wsgi"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "NOTIFYHUB_VAR_DIR": str(tmp_path / "var")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wsgi.returncode != 0
    assert "SECRET_KEY is not set" in wsgi.stderr


def test_unknown_push_backend_is_refused(tmp_path: Path) -> None:
    result = load_settings(tmp_path, DEBUG="true", NOTIFYHUB_PUSH_BACKEND="apns-direct")
    assert result.returncode != 0
    assert "is not a push backend" in result.stderr


def test_fcm_backend_needs_credentials(tmp_path: Path) -> None:
    result = load_settings(tmp_path, DEBUG="true", NOTIFYHUB_PUSH_BACKEND="fcm")
    assert result.returncode != 0
    assert "FIREBASE_CREDENTIALS" in result.stderr


def test_migrations_are_in_sync_with_models(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), "DEBUG": "true", "NOTIFYHUB_VAR_DIR": str(tmp_path / "v")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"missing migrations:\n{result.stdout}{result.stderr}"
