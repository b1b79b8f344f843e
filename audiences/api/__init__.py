"""The client API, ``/api/v1/`` (django-ninja): identify, devices, events, receipts.

OpenAPI schema at ``/api/v1/openapi.json``, interactive docs at ``/api/v1/docs``
(Swagger UI from django-ninja's own static files: no CDN).
"""

from __future__ import annotations

from ninja import NinjaAPI
from ninja.openapi.docs import Swagger

from audiences.api import errors
from audiences.api.auth import ApiKeyAuth, limit_body_size
from audiences.api.routes import router

api = NinjaAPI(
    title="NotifyHub client API",
    version="1",
    description=(
        "For client apps (mobile, web, backends). Authenticate with "
        "`Authorization: Bearer <key>`; keys are created and revoked in the admin. "
        "Errors are JSON `{detail, errors: [{field, message}]}`; a failed request saves nothing."
    ),
    urls_namespace="api-v1",
    auth=ApiKeyAuth(),
    # validatorUrl None: Swagger UI would otherwise fetch a badge from validator.swagger.io.
    docs=Swagger(settings={"validatorUrl": None}),
)
errors.install(api)
api.add_decorator(limit_body_size, mode="view")
api.add_router("", router)

__all__ = ["api"]
