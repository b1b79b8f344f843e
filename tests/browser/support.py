"""Shared pieces of the browser tests: credentials, artifacts folder, network log."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from playwright.sync_api import Page, Request, Response, expect

USERNAME = "marketer"
PASSWORD = "correct-horse-battery-staple"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class NetworkLog:
    """Everything the page asked for, and what went wrong, across navigations."""

    requests: list[str] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def on_request(self, request: Request) -> None:
        self.requests.append(request.url)

    def on_response(self, response: Response) -> None:
        if response.status >= 400:
            self.errors.append((response.status, response.url))

    def on_request_failed(self, request: Request) -> None:
        # ERR_ABORTED is the browser cancelling a request itself, typically a font or
        # image still loading when the test navigates to the next page. Real failures
        # (refused connections, 404s via on_response, foreign hosts) are still caught.
        if request.failure and "ERR_ABORTED" in request.failure:
            return
        self.failed.append(f"{request.url} ({request.failure})")

    def assert_clean(self) -> None:
        assert self.requests, "the page made no requests at all"
        foreign = [
            url
            for url in self.requests
            if urlsplit(url).scheme not in {"data", "blob", "about"}
            and urlsplit(url).hostname not in LOCAL_HOSTS
        ]
        assert not foreign, f"requests left the machine (CDN?): {foreign}"
        static_errors = [e for e in self.errors if urlsplit(e[1]).path.startswith(settings.STATIC_URL)]
        assert not static_errors, f"static assets failed: {static_errors}"
        assert not self.errors, f"requests failed: {self.errors}"
        assert not self.failed, f"requests did not complete: {self.failed}"
        assert not self.page_errors, f"JavaScript errors on the page: {self.page_errors}"


def log_in(page: Page) -> None:
    # By id, not by label text: the login page is translated for some tests.
    page.goto("/admin/login/")
    page.locator("#id_username").fill(USERNAME)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#login-form [type=submit]").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
