"""drf-spectacular description of identity's authentication (loaded by IdentityConfig.ready)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "identity.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema) -> dict:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "The value is the word `Token`, a space, then the `token` from `POST /api/login/`: "
                "`Authorization: Token 3q2-…` (in Swagger's Authorize dialog, type `Token ` before the token). "
                "`X-Auth-Token: <token>` works too. `Bearer` is answered 401 `wrong_auth_scheme`."
            ),
        }
