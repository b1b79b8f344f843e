"""``/preferences/…`` (mounted by notifyhub/urls.py). ``<token>/`` is a public interface."""

from django.urls import path

from audiences.preference_center import views

app_name = "preferences"

urlpatterns = [
    # Before "<token>/": a token never reads "erased" (it always contains ":").
    path("erased/", views.erased, name="erased"),
    path("<str:token>/", views.page, name="page"),
    # The page links its actions as its own path plus these (views.*_PATH).
    path(f"<str:token>/{views.UNSUBSCRIBE_PATH}", views.unsubscribe_all, name="unsubscribe"),
    path(f"<str:token>/{views.PAUSE_PATH}", views.pause, name="pause"),
    path(f"<str:token>/{views.EXPORT_PATH}", views.export_data, name="export"),
    path(f"<str:token>/{views.ERASE_PATH}", views.erase, name="erase"),
]
