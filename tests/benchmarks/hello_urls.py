"""The project's URLs plus ``/bench/hello/``: the baseline of the preference-center benchmark.

The hello view goes through the same server, middleware and URL resolution as the
page (it is resolved after every project URL), and does nothing else.
"""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from notifyhub.urls import urlpatterns as project_urlpatterns


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("Hello, world!", content_type="text/plain")


urlpatterns = [*project_urlpatterns, path("bench/hello/", hello)]
