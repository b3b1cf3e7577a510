"""Thin API views: validate with a serializer, call one service, shape the answer."""
from django.utils.decorators import method_decorator
from django.views.decorators.cache import cache_control
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from allergies import selectors, services
from allergies.selectors import AllergyState
from allergies.serializers import (
    AllergenListSerializer,
    AllergyHistoryPageSerializer,
    AllergyHistoryQuerySerializer,
    AllergyProfileInputSerializer,
    AllergyProfileMessageOutputSerializer,
    AllergyProfileOutputSerializer,
    allergy_profile_input_read,
    allergy_profile_input_validate,
)
from allergies.validation import SEVERITY_LEVELS, AllergyProfileInvalid, CleanProfile, allergy_profile_clean
from allergies.vocabulary import ALLERGENS, EU, US
from identity import selectors as identity_selectors
from identity.models import AuthToken
from project.errors import ErrorSerializer

UPDATED_MESSAGE = "Allergy profile updated."
CLEARED_MESSAGE = "Allergy profile cleared."
TAG = "allergies"
# The vocabulary changes only with a release: let browsers and proxies keep it for a day.
VOCABULARY_MAX_AGE = 24 * 3600
SYNC_NOTE = (
    " Every answer carries `sync`: whether the Agent (the recommendation service) holds this revision yet, "
    "with a stable `code` and a `message` to show."
)


_UPDATED_AT = AllergyProfileOutputSerializer().fields["updated_at"]


def _render(state: AllergyState, message: str | None = None) -> dict:
    """What AllergyProfileOutputSerializer renders for `state` (plus `message`), built directly: instantiating
    the serializer cost ~10 % of a GET. A test holds the two equal."""
    data = {
        "confirmed": list(state.confirmed),
        "intolerances": list(state.intolerances),
        "severity": dict(state.severity),
        "allergy_flags": state.allergy_flags,
        "recognised": state.recognised,
        "custom": state.custom,
        "revision": state.revision,
        "updated_at": None if state.updated_at is None else _UPDATED_AT.to_representation(state.updated_at),
        "sync": state.sync,
    }
    if message is not None:
        data["message"] = message
    return data


class AllergyProfileView(APIView):
    """The user's allergy profile; every answer carries its sync state with the Agent."""

    permission_classes = [IsAuthenticated]

    def token_lookup(self, request: Request, raw: str) -> AuthToken | None:
        """identity.authentication.TokenAuthentication's hook: a GET loads the profile in the token's statement
        (one statement per GET) and leaves it on the request as `allergy_state`; a PUT whose body is well formed
        and valid is written with the token read in the locked update's statement (2 round trips, not 3:
        services.allergy_profile_replace_authenticated) and leaves the new state there. Anything else (DELETE,
        a body the serializer would refuse or explain) reads the token alone and goes the usual way, so every
        error, and 401 before 400, stays as it was."""
        if request.method == "PUT":
            clean = self._put_body(request)
            if clean is None:
                return identity_selectors.auth_token_get_usable(raw=raw)
            found = services.allergy_profile_replace_authenticated(raw=raw, clean=clean)
        elif request.method == "GET":
            found = selectors.allergy_profile_get_with_token(raw=raw)
        else:
            return identity_selectors.auth_token_get_usable(raw=raw)
        if found is None:
            return None
        token, request.allergy_state = found
        return token

    def _put_body(self, request: Request) -> CleanProfile | None:
        """The PUT body, clean, when the write may go with the authentication: nothing but authentication stands
        between it and the handler on this view (no throttle, IsAuthenticated only, which a usable token passes),
        and the body is well formed and valid. None otherwise. A parsing error is kept and raised by put(), after
        authentication, as before (DRF's request.data would answer empty data the second time)."""
        if self.get_throttles() or any(type(rule) is not IsAuthenticated for rule in self.get_permissions()):
            return None
        try:
            data = request.data
        except Exception as exc:  # whatever it is, put() raises it where it was raised before
            request.allergy_body_error = exc
            return None
        body = allergy_profile_input_read(data)
        if body is None:
            return None
        try:
            return allergy_profile_clean(**body)
        except AllergyProfileInvalid:
            return None

    @extend_schema(
        tags=[TAG], summary="The allergy profile", description="A user who never set one gets empty lists." + SYNC_NOTE,
        responses={200: AllergyProfileOutputSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        state = getattr(request, "allergy_state", None)
        return Response(_render(state if state is not None else selectors.allergy_profile_get(user=request.user)))

    @extend_schema(
        tags=[TAG],
        summary="Replace the allergy profile",
        description=(
            "A full replace (not a merge): omitted fields become empty, but a body naming none of them is "
            "refused (`empty_profile`); clearing is DELETE. Names are normalised to the vocabulary "
            "(`recognised`) or kept folded (`custom`). Problems are reported per field." + SYNC_NOTE
        ),
        request=AllergyProfileInputSerializer,
        responses={200: AllergyProfileMessageOutputSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
        examples=[
            OpenApiExample(
                "peanuts",
                value={
                    "confirmed": ["peanuts"],
                    "intolerances": ["lactose"],
                    "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"},
                },
                request_only=True,
            )
        ],
    )
    def put(self, request: Request) -> Response:
        state = getattr(request, "allergy_state", None)  # written with the authentication (token_lookup)
        if state is None:
            error = getattr(request, "allergy_body_error", None)
            if error is not None:
                raise error
            body = allergy_profile_input_validate(request.data)  # AllergyProfileInputSerializer's validation
            state = services.allergy_profile_replace(user=request.user, session=request.auth, **body)
        return Response(_render(state, UPDATED_MESSAGE))

    @extend_schema(
        tags=[TAG], summary="Clear the allergy profile", description="A new, empty revision." + SYNC_NOTE,
        request=None, responses={200: AllergyProfileMessageOutputSerializer, 401: ErrorSerializer},
    )
    def delete(self, request: Request) -> Response:
        state = services.allergy_profile_clear(user=request.user, session=request.auth)
        return Response(_render(state, CLEARED_MESSAGE))


def _allergen(allergen) -> dict:
    return {
        "name": allergen.name,
        "group": allergen.group,
        "sources": list(allergen.sources),
        "eu": EU in allergen.sources,
        "us": US in allergen.sources,
        "synonyms": list(allergen.synonyms),
        "notes": allergen.notes,
    }


VOCABULARY = AllergenListSerializer(
    {"allergens": [_allergen(a) for a in ALLERGENS], "severity_levels": list(SEVERITY_LEVELS)}
).data


@method_decorator(cache_control(public=True, max_age=VOCABULARY_MAX_AGE), name="get")
class AllergenListView(APIView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=[TAG],
        summary="The allergen vocabulary",
        description=(
            "Public and cacheable: the canonical names (EU 1169/2011 Annex II and US FALCPA + FASTER Act), "
            "their group, sources and synonyms, for autocomplete; and the severity levels."
        ),
        responses={200: AllergenListSerializer},
    )
    def get(self, request: Request) -> Response:
        return Response(VOCABULARY)


class AllergyHistoryView(APIView):
    """Every kept revision of the profile: what changed, when, from which session."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=[TAG],
        summary="The history of the allergy profile",
        description="Every kept revision, newest first: when, what changed, from which session.",
        parameters=[
            OpenApiParameter("limit", int, description="1 to 100, default 20"),
            OpenApiParameter("offset", int, description=">= 0, default 0"),
        ],
        responses={200: AllergyHistoryPageSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        query = AllergyHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = selectors.allergy_history_page_get(user=request.user, **query.validated_data)
        return Response(AllergyHistoryPageSerializer(page).data)
