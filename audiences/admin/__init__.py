"""Admin of the audiences app, one module per area (each registers its models)."""

from audiences.admin import (
    api_keys,  # noqa: F401
    imports,  # noqa: F401
    segments,  # noqa: F401
    subscribers,  # noqa: F401
)
