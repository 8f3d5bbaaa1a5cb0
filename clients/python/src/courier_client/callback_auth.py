"""Verifying that a call to a Checker or Receiver comes from Courier.

Courier signs every Check and Deliver with `authorization: Bearer <JWT>` (EdDSA over Ed25519,
`kid` in the header). Claims: `iss` "courier", `aud` the endpoint exactly as registered, `sub`
the producer (checks) or the subscription (deliveries), `message_id`, `iat`, `exp`. The keys are
the JWKS Courier serves at GET /.well-known/jwks.json on its HTTP listener (`metrics_listen`).
Needs the `jwt` extra (PyJWT with cryptography).
"""

from __future__ import annotations

import logging
from typing import Optional

import grpc

log = logging.getLogger("courier_client.callback_auth")


class CallbackVerifier:
    """Checks the JWT on Courier's calls against Courier's JWKS (fetched again on a new kid)."""

    def __init__(self, jwks_url: str, *, leeway: float = 5.0) -> None:
        try:
            import jwt
        except ImportError as error:  # pragma: no cover - depends on the extras installed
            raise ImportError(
                'verifying Courier\'s callbacks needs PyJWT: pip install "courier-client[jwt]"'
            ) from error
        self._jwt = jwt
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True)
        self._leeway = leeway

    def problem(self, metadata, *, audience: str, subject: str, message_id: str) -> Optional[str]:
        """None when the call's token is Courier's for this endpoint, subject and message;
        otherwise what is wrong with it."""
        header = dict(metadata).get("authorization", "")
        if not header.startswith("Bearer "):
            return "no bearer token"
        token = header[len("Bearer ") :]
        jwt = self._jwt
        try:
            key = self._keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["EdDSA"],
                issuer="courier",
                audience=audience,
                options={"require": ["exp", "iat", "sub", "message_id"]},
                leeway=self._leeway,
            )
        except jwt.PyJWTError as error:
            return f"{type(error).__name__}: {error}"
        if claims["sub"] != subject or claims["message_id"] != message_id:
            return (
                f"token for {claims['sub']}/{claims['message_id']}, call for {subject}/{message_id}"
            )
        return None

    def require(
        self, context: grpc.ServicerContext, *, audience: str, subject: str, message_id: str
    ):
        """Aborts the call with UNAUTHENTICATED unless it carries Courier's token for it."""
        problem = self.problem(
            context.invocation_metadata(), audience=audience, subject=subject, message_id=message_id
        )
        if problem is not None:
            log.warning("refused a call that is not Courier's: %s", problem)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "not a call from Courier")
