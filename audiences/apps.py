from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "audiences"
    verbose_name = "Audiences"
