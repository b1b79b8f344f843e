from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        # The ledger's part of a subscriber's data export and erasure (audiences cannot
        # import delivery, so delivery registers itself).
        from delivery import privacy

        privacy.register()
