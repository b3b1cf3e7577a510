"""Token authentication for the API: `Authorization: Token <t>` or `X-Auth-Token: <t>`.

The token is looked up by its SHA-256; a revoked or expired token, an unknown one, or a user
uid sent in its place is refused with 401. No header at all leaves the request anonymous, and
the IsAuthenticated default permission answers 401 (authenticate_header below makes it 401, not 403).
"""
import hmac
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from identity import selectors
from identity.models import AuthToken

KEYWORD = "Token"
# Record use at most this often, so authenticated reads don't each cost a write.
LAST_USED_RESOLUTION = timedelta(minutes=5)
# Longer than any token we issue (43 chars); refuse junk before touching the database.
MAX_TOKEN_LENGTH = 128


# Schemes clients commonly guess: answered with how to send the token, not "not provided".
OTHER_SCHEMES = {b"bearer", b"basic", b"jwt"}


class WrongAuthScheme(exceptions.AuthenticationFailed):
    default_detail = (
        "Send the token as `Authorization: Token <token>` (or `X-Auth-Token: <token>`); "
        "the Bearer and Basic schemes are not used."
    )
    default_code = "wrong_auth_scheme"


class TokenAuthentication(BaseAuthentication):
    """One statement per request: token and user (identity.selectors.auth_token_get_usable). A view whose answer
    needs more rows can load them in that same statement: it defines `token_lookup(request, raw)`, returning
    the usable token (its user attached) or None, with the same rules (see allergies.views)."""

    def authenticate(self, request: Request):
        raw = self._raw_token(request)
        if raw is None:
            return None
        view = (request.parser_context or {}).get("view")
        lookup = getattr(view, "token_lookup", None)
        token: AuthToken | None = lookup(request, raw) if lookup else selectors.auth_token_get_usable(raw=raw)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or expired token.", code="invalid_token")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
            type(token).objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD

    @staticmethod
    def _raw_token(request: Request) -> str | None:
        header = get_authorization_header(request).split()
        if header and header[0].lower() != KEYWORD.lower().encode() and header[0].lower() in OTHER_SCHEMES:
            raise WrongAuthScheme
        if header and header[0].lower() == KEYWORD.lower().encode():
            if len(header) != 2:
                raise exceptions.AuthenticationFailed("Invalid token header.", code="invalid_token")
            raw_bytes = header[1]
        else:
            x_auth = request.META.get("HTTP_X_AUTH_TOKEN", "")
            if not x_auth:
                return None
            raw_bytes = x_auth.strip().encode("latin-1", "replace") if isinstance(x_auth, str) else x_auth
        try:
            raw = raw_bytes.decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token header.", code="invalid_token") from exc
        if not raw or len(raw) > MAX_TOKEN_LENGTH:
            raise exceptions.AuthenticationFailed("Invalid or expired token.", code="invalid_token")
        return raw


class InvalidServiceToken(exceptions.APIException):
    # Not AuthenticationFailed: on a view without authenticators DRF would turn that into 403.
    status_code = 401
    default_detail = "Invalid service token."
    default_code = "invalid_service_token"


class HasServiceToken(BasePermission):
    """Service-to-service calls (the Agent): `X-Service-Token` must equal AGENT_SERVICE_TOKEN.

    Compared in constant time; an unset token on our side refuses everything.
    """

    def has_permission(self, request: Request, view) -> bool:
        expected = settings.AGENT_SERVICE_TOKEN or ""
        given = request.META.get("HTTP_X_SERVICE_TOKEN", "")
        if not expected or not hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode()):
            raise InvalidServiceToken
        return True
