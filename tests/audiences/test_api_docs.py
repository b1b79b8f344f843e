"""The OpenAPI schema and the interactive docs are served locally (no CDN)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import Client
from playwright.sync_api import Page, expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from tests.services import require_chromium

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def test_openapi_schema_lists_every_operation_and_the_bearer_scheme() -> None:
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert set(schema["paths"]) == {
        "/api/v1/identify",
        "/api/v1/devices",
        "/api/v1/devices/remove",
        "/api/v1/events",
        "/api/v1/deliveries/{delivery_id}/opened",
        "/api/v1/deliveries/{delivery_id}/clicked",
        "/api/v1/preference-url",
    }
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {"type": "http", "scheme": "bearer"}
    assert set(schema["paths"]["/api/v1/events"]["post"]["responses"]) >= {
        "200",
        "400",
        "401",
        "403",
        "413",
        "429",
    }


@pytest.mark.django_db  # closing a streamed static response checks the DB connection
def test_docs_page_references_only_local_assets_that_exist() -> None:
    client = Client()
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    urls = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert urls, "the docs page links no assets at all"
    assert not [u for u in urls if urlsplit(u).netloc or u.startswith("//")], urls
    assert not re.search(r"https?://", html), "the docs page names an external host"
    assert '"validatorUrl": null' in html  # Swagger UI would fetch a badge from swagger.io
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        if hasattr(asset, "streaming_content"):
            b"".join(asset.streaming_content)  # type: ignore[arg-type]
            asset.close()


@pytest.fixture
def allow_sync_db_under_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    # Playwright's sync API runs an event loop in this thread; see tests/browser.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def page(
    live_server: LiveServer, transactional_db: None, tmp_path: Path, allow_sync_db_under_playwright: None
) -> Iterator[Page]:
    chromium = require_chromium()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            yield browser.new_page(base_url=live_server.url)
        finally:
            browser.close()


@pytest.mark.browser
def test_swagger_ui_renders_the_operations_without_leaving_the_machine(page: Page) -> None:
    requested: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("pageerror", lambda error: failed.append(str(error)))

    page.goto("/api/v1/docs")

    expect(page.locator(".opblock-summary-path", has_text="/api/v1/events")).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/identify")).to_be_visible()
    expect(page.locator("button.authorize")).to_be_visible()
    foreign = [
        u
        for u in requested
        if urlsplit(u).scheme in {"http", "https"} and urlsplit(u).hostname not in LOCAL_HOSTS
    ]
    assert not foreign, f"requests left the machine: {foreign}"
    assert not failed, failed
