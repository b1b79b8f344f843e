"""Admin of the campaigns app, one module per area (each registers its models).

``campaigns`` (campaigns, variants, status history; its page's own views live in
``views`` and ``preview``), ``test_devices`` and ``schedules`` (django-celery-beat's
models on Unfold classes).
"""

from campaigns.admin import (
    campaigns,  # noqa: F401
    schedules,  # noqa: F401
    test_devices,  # noqa: F401
)
