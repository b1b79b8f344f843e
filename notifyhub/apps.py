from django.apps import AppConfig


class NotifyHubConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "notifyhub"
    verbose_name = "NotifyHub"
