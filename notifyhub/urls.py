"""Root URLs. Public interfaces: /admin/, /preferences/<token>/, /api/v1/ and /r/<token>/.

The composition root: the client API is built in audiences.api, and the apps that
depend on audiences add their operations to it here (delivery's receipts), before
its URLs are built.
"""

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django.views.generic import RedirectView

from audiences.api import api
from delivery import api as delivery_api

delivery_api.mount(api)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers and the smoke test: the app serves and reaches its DB."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("preferences/", include("audiences.preference_center.urls")),
    path("", include("delivery.urls")),
]
