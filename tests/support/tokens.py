"""Supabase-like user tokens for tests: a signing key, its JWKS served on 127.0.0.1, and signed JWTs.

with jwks_server([issuer_key.public_jwk()]) as supabase_url:
    token = issuer_key.sign(supabase_url, sub="user-1")
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

JWKS_PATH = "/auth/v1/.well-known/jwks.json"


@dataclass
class SigningKey:
    kid: str
    private_key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, supabase_url: str, *, lifetime_seconds: int = 600, **claims: Any) -> str:
        """A token like Supabase issues for a signed-in user; `claims` override or add any claim."""
        now = int(time.time())
        payload = {
            "sub": "3f1c2a9e-user",
            "email": "user@example.com",
            "role": "authenticated",
            "aud": "authenticated",
            "iss": f"{supabase_url}/auth/v1",
            "iat": now,
            "exp": now + lifetime_seconds,
            **claims,
        }
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers={"kid": self.kid})


class JwksServer:
    def __init__(self, keys: Sequence[dict[str, Any]]) -> None:
        self.keys = list(keys)
        self.requests = 0


@contextmanager
def jwks_server(keys: Sequence[dict[str, Any]]) -> Iterator[tuple[str, JwksServer]]:
    """Serve `{"keys": keys}` at JWKS_PATH on 127.0.0.1; yields the Supabase URL and the mutable server state."""
    state = JwksServer(keys)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != JWKS_PATH:
                self.send_error(404)
                return
            state.requests += 1
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
