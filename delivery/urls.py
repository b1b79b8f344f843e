"""Public URLs of the delivery app (mounted at the site root by notifyhub/urls.py).

``/r/<token>/`` is a public interface: it is inside messages already delivered, so it
must not move (``delivery.receipts.CLICK_PATH`` spells it out for the send step).
"""

from django.urls import path

from delivery import views

app_name = "delivery"

urlpatterns = [
    path("r/<str:token>/", views.click_redirect, name="click"),
]
