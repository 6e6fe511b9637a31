"""Certificates for the TLS tests (trustme's CA, written to files as a user's would be) and
requests that trust them."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme


@dataclass(frozen=True)
class Pair:
    cert: str
    key: str

    def flags(self, prefix: str) -> list[str]:
        """`--PREFIX-cert FILE --PREFIX-key FILE`."""
        return [f"--{prefix}-cert", self.cert, f"--{prefix}-key", self.key]


class Certs:
    """A test CA whose certificate is `ca` (a file), issuing pairs into `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.authority = trustme.CA()
        self.ca = str(folder / "ca.pem")
        self.authority.cert_pem.write_to_path(self.ca)

    def issue(self, name: str, *hosts: str, **options: Any) -> Pair:
        cert = self.authority.issue_cert(
            *(hosts or ("127.0.0.1", "localhost")), common_name=name, **options
        )
        pair = Pair(str(self.folder / f"{name}.pem"), str(self.folder / f"{name}.key"))
        cert.private_key_pem.write_to_path(pair.key)
        cert.cert_chain_pems[0].write_to_path(pair.cert)
        return pair

    def context(self, client: Pair | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        if client is not None:
            ctx.load_cert_chain(client.cert, client.key)
        return ctx


def https(
    method: str, url: str, ctx: ssl.SSLContext, body: Any = None, timeout: float = 5.0
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def https_get(url: str, ctx: ssl.SSLContext) -> Any:
    status, body = https("GET", url, ctx)
    assert status == 200, (url, status, body)
    return body
