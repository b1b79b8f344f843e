"""Throw-away service-account credentials that point firebase-admin at the stub.

firebase-admin signs a JWT with the service account's RSA key and trades it at
``token_uri`` for an access token, so the key must be real; it is generated on the
spot (never committed) and only ever shown to the stub.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

DEFAULT_PROJECT = "notifyhub-stub"


def service_account_info(*, token_uri: str, project_id: str = DEFAULT_PROJECT) -> dict[str, Any]:
    """A service-account JSON document with a fresh 2048-bit key and the given ``token_uri``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    email = f"firebase-adminsdk-stub@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
    }


def write_service_account(path: Path, *, token_uri: str, project_id: str = DEFAULT_PROJECT) -> Path:
    """Write :func:`service_account_info` to ``path`` (mode 0600); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(service_account_info(token_uri=token_uri, project_id=project_id), handle, indent=2)
    return path
