"""Supabase user tokens, verified for real: signature against the project's JWKS, expiry, audience, issuer.

Supabase signs user JWTs with asymmetric keys published at `<SUPABASE_URL>/auth/v1/.well-known/jwks.json`.
This module verifies them locally with PyJWT (the `supabase` client would add a network round trip to
Supabase per request and a heavy import; its `get_claims` does the same JWKS check with less control
over timeouts and caching). Only asymmetric algorithms are accepted, so `alg: none` and HS256 tokens
signed with a public key are refused.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

ACCEPTED_ALGORITHMS = ("RS256", "ES256", "EdDSA")
# Unknown key ids make us refetch the JWKS (Supabase rotates keys), but not more often than this,
# so that tokens with made-up `kid`s cannot turn this service into a load generator against Supabase.
MIN_REFRESH_INTERVAL_SECONDS = 30.0


class AuthError(Exception):
    """The request carries no acceptable user token: answered with 401."""


class AuthUnavailableError(Exception):
    """The JWKS cannot be fetched, so no token can be verified: answered with 503."""


@dataclass(frozen=True)
class User:
    sub: str
    email: str | None
    role: str | None
    exp: int | None
    anonymous: bool = False


class JwksCache:
    def __init__(self, url: str, *, ttl_seconds: float, timeout_seconds: float) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.timeout_seconds = timeout_seconds
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> jwt.PyJWK:
        now = time.monotonic()
        stale = now - self._fetched_at > self.ttl_seconds
        unknown_and_may_refresh = kid not in self._keys and now - self._fetched_at > MIN_REFRESH_INTERVAL_SECONDS
        if stale or unknown_and_may_refresh:
            async with self._lock:
                # Another request may have refreshed while this one waited.
                if self._fetched_at < now:
                    await self._refresh()
        try:
            return self._keys[kid]
        except KeyError:
            raise AuthError("token signed with an unknown key") from None

    async def _refresh(self) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout_seconds) as client:
                response = await client.get(self.url)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
            if self._keys:
                # Keep verifying with the keys we have rather than locking every user out during an outage.
                self._fetched_at = time.monotonic()
                return
            raise AuthUnavailableError(f"cannot fetch the JWKS: {type(error).__name__}") from None
        self._keys = {key.key_id: key for key in key_set.keys if key.key_id}
        self._fetched_at = time.monotonic()


class TokenVerifier:
    def __init__(self, *, jwks: JwksCache, audience: str, issuer: str) -> None:
        self.jwks = jwks
        self.audience = audience
        self.issuer = issuer

    async def verify(self, token: str) -> User:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ACCEPTED_ALGORITHMS:
            raise AuthError("token algorithm not accepted")
        if not isinstance(kid, str):
            raise AuthError("token has no key id")
        key = await self.jwks.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "sub", "aud"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer not accepted") from None
        except jwt.PyJWTError:
            raise AuthError("invalid token") from None
        return User(
            sub=str(claims["sub"]),
            email=claims.get("email") if isinstance(claims.get("email"), str) else None,
            role=claims.get("role") if isinstance(claims.get("role"), str) else None,
            exp=int(claims["exp"]),
        )


DEVELOPMENT_USER = User(sub="development-user", email=None, role="anonymous", exp=None, anonymous=True)
