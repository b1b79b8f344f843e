"""The stub's command line, shared by ``python -m delivery.fcm_stub`` and ``manage.py fcm_stub``."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

from delivery.fcm_stub.credentials import DEFAULT_PROJECT, write_service_account
from delivery.fcm_stub.faults import KINDS, RATE_KINDS, FaultPlanError
from delivery.fcm_stub.server import FcmStubServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1).")
    parser.add_argument("--port", type=int, default=0, help="Port (default 0: a free port, printed).")
    parser.add_argument(
        "--project",
        default=None,
        help="Only accept sends to this Firebase project id (default: any; written credentials "
        f"use {DEFAULT_PROJECT!r}).",
    )
    parser.add_argument(
        "--log", type=Path, default=None, help="Append every accepted message to FILE (JSONL)."
    )
    parser.add_argument(
        "--no-memory-log",
        action="store_true",
        help="Do not keep accepted messages in memory (GET /__log stays empty); for very long runs.",
    )
    parser.add_argument(
        "--write-credentials",
        type=Path,
        default=None,
        metavar="PATH",
        help="Write a service-account JSON (fresh RSA key) whose token_uri is this stub.",
    )
    kinds = ", ".join(sorted(KINDS))
    parser.add_argument(
        "--token-fault",
        action="append",
        default=[],
        metavar="TOKEN=KIND",
        help=f"Fail every request for TOKEN (repeatable). KIND: {kinds}.",
    )
    parser.add_argument(
        "--prefix-fault",
        action="append",
        default=[],
        metavar="PREFIX=KIND",
        help="Fail every request for tokens starting with PREFIX (repeatable).",
    )
    parser.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="KIND=FRACTION",
        help=f"Fail this fraction of requests (repeatable). KIND: {', '.join(sorted(RATE_KINDS))}.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the rate-based faults (default 0).")
    parser.add_argument("--quota-requests", type=int, default=0, help="Answer the next N sends with 429.")
    parser.add_argument(
        "--quota-seconds", type=float, default=0.0, help="Answer sends with 429 for S seconds."
    )
    parser.add_argument(
        "--retry-after", default="60", help="Retry-After of 429 replies in seconds, or 'none' (default 60)."
    )
    parser.add_argument("--auth-failure", action="store_true", help="Answer every send with 401.")
    parser.add_argument("--token-failure", action="store_true", help="Refuse every OAuth token request.")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="Delay every send reply (ms).")
    parser.add_argument(
        "--faults", default=None, metavar="JSON", help="A whole fault plan (see POST /__control)."
    )


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, kind = value.rpartition("=")
        if not sep or not key:
            raise FaultPlanError(f"{flag} expects KEY=VALUE, got {value!r}")
        pairs[key] = kind
    return pairs


def plan_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """The fault plan (``POST /__control`` JSON) the command-line flags describe."""
    plan: dict[str, Any] = json.loads(options["faults"]) if options.get("faults") else {}
    if options["token_fault"]:
        plan["tokens"] = {**plan.get("tokens", {}), **_pairs(options["token_fault"], "--token-fault")}
    if options["prefix_fault"]:
        plan["token_prefixes"] = {
            **plan.get("token_prefixes", {}),
            **_pairs(options["prefix_fault"], "--prefix-fault"),
        }
    if options["rate"]:
        plan["rates"] = {**plan.get("rates", {}), **_pairs(options["rate"], "--rate")}
    if options["seed"]:
        plan["seed"] = options["seed"]
    retry_after = None if str(options["retry_after"]).lower() == "none" else int(options["retry_after"])
    if options["quota_requests"] or options["quota_seconds"]:
        plan["quota"] = {
            "requests": options["quota_requests"],
            "seconds": options["quota_seconds"],
            "retry_after": retry_after,
        }
    for flag in ("auth_failure", "token_failure"):
        if options[flag]:
            plan[flag] = True
    if options["latency_ms"]:
        plan["latency_ms"] = options["latency_ms"]
    return plan


def run(options: dict[str, Any], *, stdout: TextIO = sys.stdout) -> None:
    """Start the stub, print the settings to use, serve until interrupted (SIGINT/SIGTERM)."""
    plan = plan_from_options(options)
    server = FcmStubServer(
        host=options["host"],
        port=options["port"],
        project=options["project"],
        log_path=options["log"],
        keep_log=not options["no_memory_log"],
    )
    server.state.plan.update(plan)
    stdout.write(f"FCM stub listening on {server.url} (token endpoint {server.token_uri})\n")
    stdout.write(f"FCM_ENDPOINT={server.url}\n")
    if options["write_credentials"]:
        path = write_service_account(
            options["write_credentials"].resolve(),
            token_uri=server.token_uri,
            project_id=options["project"] or DEFAULT_PROJECT,
        )
        stdout.write(f"FIREBASE_CREDENTIALS={path}\n")
    else:
        stdout.write(
            "FIREBASE_CREDENTIALS=<a service-account JSON whose token_uri is "
            f"{server.token_uri}; --write-credentials PATH writes one>\n"
        )
    stdout.write("NOTIFYHUB_PUSH_BACKEND=fcm\n")
    stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m delivery.fcm_stub", description="Loopback FCM stub.")
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        run(options)
    except FaultPlanError as error:
        parser.error(str(error))
