from django.apps import AppConfig


class NotifyHubConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifyhub"
    verbose_name = "NotifyHub"

    def ready(self) -> None:
        from notifyhub import checks  # noqa: F401  (registers the system checks)
