"""The one exception tree of the gateway.

    GatewayError                 error, description, status
    ├── ConfigError              problems: every "key.path: message" found at once
    ├── StoreUnavailableError    the store (Redis) cannot be reached: fail closed, 503
    ├── SignInError              a sign-in step failed; rendered as an HTML page with a reference id
    │   ├── IdPError             Okta / the OIDC provider answered with an error or not at all
    │   └── TokenValidationError the ID token failed a check
    ├── UpstreamError            the protected application refused (502) or was too slow (504)
    ├── RateLimitedError         too many requests of one kind from one client (429)
    ├── NotFoundError            no such object (404)
    ├── ConflictError            the object clashes with another (409)
    └── ReadOnlyError            the object comes from the config file; the API cannot change it

Each surface turns them into its own format: an HTML page or plain text with a reference id for
browsers and scripts (`runtime.py`, used by `app.py`'s exception handler and the proxy's guard),
Cloudflare's envelope under `/api` (`admin/`), SCIM's error JSON under SCIM routes (`scim/`).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""

    status: int = 500
    error: str = "gateway_error"

    def __init__(self, description: str, *, error: str | None = None, status: int | None = None):
        super().__init__(description)
        self.description = description
        if error is not None:
            self.error = error
        if status is not None:
            self.status = status


class ConfigError(GatewayError):
    """The configuration is invalid; `problems` holds every problem with its key path."""

    error = "invalid_config"
    status = 400

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class StoreUnavailableError(GatewayError):
    """The session store did not answer. Nobody gets in while this is so.

    `description` is what callers see; `detail` (also `str(exc)`), what happened, for the log
    only: a Redis address or error text is no business of an anonymous caller."""

    error = "store_unavailable"
    status = 503

    def __init__(self, description: str, *, detail: str = ""):
        super().__init__(description)
        self.detail = detail or description

    def __str__(self) -> str:
        return self.detail


class SignInError(GatewayError):
    """A sign-in failed. `hint` tells an operator what to check; shown on the error page.
    `subject` and `subject_email` are set when it failed after the IdP proved who the user
    is (its `sub` and the email it sent): such a failure counts towards their risk level."""

    error = "sign_in_failed"
    status = 400

    def __init__(
        self,
        description: str,
        *,
        error: str | None = None,
        status: int | None = None,
        hint: str = "",
        step: str = "",
        subject: str = "",
        subject_email: str = "",
    ):
        super().__init__(description, error=error, status=status)
        self.hint = hint
        self.step = step
        self.subject = subject
        self.subject_email = subject_email
        self.logged = False  # the provider logs a failure once, where it is first known


class IdPError(SignInError):
    """The identity provider answered with an error, or too slowly, or not at all."""

    error = "idp_error"
    status = 502


class TokenValidationError(SignInError):
    """The ID token (or userinfo answer) failed validation."""

    error = "invalid_token"
    status = 400


class UpstreamError(GatewayError):
    """The protected application refused the connection (502) or timed out (504)."""

    error = "upstream_error"
    status = 502


class RateLimitedError(GatewayError):
    """Too many requests of one kind from one client; `retry_after` seconds until it may."""

    error = "rate_limited"
    status = 429

    def __init__(self, description: str, *, retry_after: int):
        super().__init__(description)
        self.retry_after = retry_after


class NotFoundError(GatewayError):
    error = "not_found"
    status = 404


class ConflictError(GatewayError):
    error = "conflict"
    status = 409


class ReadOnlyError(GatewayError):
    """Objects defined in the config file are read-only through the API."""

    error = "read_only"
    status = 403
