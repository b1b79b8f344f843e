"""A client for the stub's control API, for tests, benchmarks and scripts (stdlib only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


class FcmStubClient:
    """Wraps ``POST /__control``, ``POST /__reset``, ``GET /__log``, ``/__requests``, ``/__stats``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(  # noqa: S310 - the stub's own http(s) URL
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise ValueError(f"FCM stub refused {method} {path}: {error.read().decode()}") from error

    def set_faults(self, plan: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
        """Change the fault plan (see ``FaultPlan``); keys given replace those keys. Returns the plan."""
        result: dict[str, Any] = self._call("POST", "/__control", {**(plan or {}), **keys})
        return result

    def faults(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/__faults")
        return result

    def reset(self, *, log: bool = True, faults: bool = True) -> dict[str, Any]:
        """Forget the log and request records and/or clear the fault plan."""
        result: dict[str, Any] = self._call("POST", "/__reset", {"log": log, "faults": faults})
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/__stats")
        return result

    def log(self) -> list[dict[str, Any]]:
        """Every accepted message, in order: ``{"seq", "t", "name", "project", "message"}``."""
        return self._pages("/__log", "entries")

    def requests(self) -> list[dict[str, Any]]:
        """Every send request: ``{"t", "token", "status", "error"}`` (status 0 = dropped)."""
        return self._pages("/__requests", "requests")

    def _pages(self, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"{path}?since={len(items)}")
            items.extend(page[key])
            if not page[key] or len(items) >= page["total"]:
                return items
