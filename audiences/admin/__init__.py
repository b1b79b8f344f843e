"""Admin of the audiences app, one module per area (each registers its models)."""

from audiences.admin import subscribers  # noqa: F401
