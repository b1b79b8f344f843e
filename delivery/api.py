"""The client API's receipt operations: ``POST /api/v1/deliveries/{id}/opened|clicked``.

They live here, not in ``audiences.api``, because a receipt stamps the delivery
ledger and audiences may not import delivery (audiences ← campaigns ← delivery).
The composition root (``notifyhub/urls.py``) calls :func:`mount` on the one API
object before its URLs are built, so the paths, the API-key authentication, the
body-size limit, the error format and the OpenAPI operation ids stay what they were.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Router, Schema

from audiences.api.schemas import ErrorOut, ReceiptIn, ReceiptOut
from audiences.services.events import FieldError, FieldValidationError
from delivery.receipts import DeliveryNotFound, ReceiptKind, receipt_record

router = Router(tags=["receipts"])

ERRORS: dict[int, type[Schema]] = {
    400: ErrorOut,
    401: ErrorOut,
    403: ErrorOut,
    404: ErrorOut,
    413: ErrorOut,
    429: ErrorOut,
}


def _receipt(kind: ReceiptKind, delivery_id: int, payload: ReceiptIn) -> dict[str, Any]:
    if delivery_id < 1:
        raise FieldValidationError(
            [FieldError("delivery_id", "Send the delivery id from the push's data (a positive number).")],
            "The receipt was not recorded.",
        )
    result = receipt_record(
        delivery_id=delivery_id,
        kind=kind,
        external_id=payload.external_id,
        occurred_at=payload.occurred_at,
        properties=payload.properties,
    )
    return {"recorded": result.recorded}


# operation_id: the ids these operations had when they lived in audiences.api.routes,
# kept so that clients generated from the OpenAPI schema do not change.
@router.post(
    "/deliveries/{delivery_id}/opened",
    response={200: ReceiptOut, **ERRORS},
    summary="Report that a push was opened",
    operation_id="audiences_api_routes_delivery_opened",
)
def delivery_opened(request: HttpRequest, delivery_id: int, payload: ReceiptIn) -> dict[str, Any]:
    return _receipt("opened", delivery_id, payload)


@router.post(
    "/deliveries/{delivery_id}/clicked",
    response={200: ReceiptOut, **ERRORS},
    summary="Report that a push (or one of its actions) was clicked",
    description="A click also counts as an open when no open was reported before.",
    operation_id="audiences_api_routes_delivery_clicked",
)
def delivery_clicked(request: HttpRequest, delivery_id: int, payload: ReceiptIn) -> dict[str, Any]:
    return _receipt("clicked", delivery_id, payload)


def mount(api: NinjaAPI) -> None:
    """Add the receipt operations (and their 404) to ``api``; call once, before ``api.urls``."""

    def on_delivery_not_found(request: HttpRequest, exc: Any) -> HttpResponse:
        return api.create_response(request, {"detail": exc.message, "errors": []}, status=404)

    api.add_exception_handler(DeliveryNotFound, on_delivery_not_found)
    api.add_router("", router)
