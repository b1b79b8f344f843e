"""NotifyHub — a self-hosted push-notification marketing platform."""

from notifyhub.celery import app as celery_app

__all__ = ("celery_app",)
