"""Browser-test fixtures: Debian's Chromium through Playwright against a live server.

Every page's network traffic is recorded (``network``) so tests can assert that
nothing left the machine and no asset failed to load.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright
from pytest_django.live_server_helper import LiveServer

from tests.browser.support import ARTIFACTS, CHROMIUM_ARGS, NetworkLog
from tests.services import require_chromium


@pytest.fixture
def allow_sync_db_under_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    # Playwright's sync API runs an asyncio event loop in this thread (it switches
    # to it with greenlets), so Django sees a "running loop" and refuses ORM calls
    # made from the test and its fixtures (SynchronousOnlyOperation). Nothing is async:
    # the test and the live server thread each use their own connection
    # synchronously. Scoped to these tests so the check stays on everywhere else.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def network() -> NetworkLog:
    return NetworkLog()


@pytest.fixture
def browser_locale() -> str:
    """The browser's language (Accept-Language); the admin follows it (LocaleMiddleware)."""
    return "en-US"


@pytest.fixture
def page(
    live_server: LiveServer,
    transactional_db: None,
    tmp_path: Path,
    network: NetworkLog,
    browser_locale: str,
    allow_sync_db_under_playwright: None,
) -> Iterator[Page]:
    chromium = require_chromium()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            base_url=live_server.url,
            viewport={"width": 1280, "height": 900},
            locale=browser_locale,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.on("request", network.on_request)
            page.on("response", network.on_response)
            page.on("requestfailed", network.on_request_failed)
            page.on("pageerror", lambda error: network.page_errors.append(str(error)))
            yield page
        finally:
            context.close()
