"""Bench-only endpoints: the bare DRF ceiling, the idiomatic DRF peer and the seed-000 synchronous view.

They run in the same gunicorn, behind the same middleware and settings as the real API, so
the differences the benchmark reports come from the views alone.
"""
import logging

import requests
from rest_framework import generics, serializers
from rest_framework.authentication import TokenAuthentication as DRFTokenAuthentication
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from allergies.validation import AllergyProfileInvalid, allergy_profile_clean
from bench.models import PeerAllergyProfile, SyncAllergyProfile
from bench.seed_agent import update_agent_allergies_rollback_unsafe

logger = logging.getLogger(__name__)

# A response of the size and shape of GET /api/allergies/.
CANNED = {
    "confirmed": ["peanuts"],
    "intolerances": ["lactose"],
    "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"},
    "allergy_flags": ["lactose", "peanuts"],
    "revision": 1,
    "updated_at": "2026-11-22T10:00:00Z",
    "sync": {"state": "synced", "revision": 1, "synced_revision": 1, "last_error": None},
}


class CeilingView(APIView):
    """The ceiling: DRF with no authentication, no database; PUT parses the JSON body and echoes it."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        return Response(CANNED)

    def put(self, request: Request) -> Response:
        return Response({**CANNED, "echo": request.data})


class CeilingAuthView(APIView):
    """The ceiling plus the project's token authentication (diagnostic: what auth alone costs)."""

    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response(CANNED)


class PeerAllergyProfileSerializer(serializers.ModelSerializer):
    """The idiomatic peer's serializer: a ModelSerializer over its own model, the same allergy rules."""

    allergy_flags = serializers.SerializerMethodField()

    class Meta:
        model = PeerAllergyProfile
        fields = ["confirmed", "intolerances", "severity", "allergy_flags", "revision", "updated_at"]
        read_only_fields = ["revision", "updated_at"]

    def get_allergy_flags(self, profile: PeerAllergyProfile) -> list[str]:
        return sorted(set(profile.confirmed) | set(profile.intolerances))

    def validate(self, attrs: dict) -> dict:
        # The same vocabulary and rules as PUT /api/allergies/, so both validate the same way.
        try:
            clean = allergy_profile_clean(confirmed=attrs.get("confirmed", []),
                                          intolerances=attrs.get("intolerances", []),
                                          severity=attrs.get("severity", {}))
        except AllergyProfileInvalid as exc:
            raise serializers.ValidationError(exc.errors) from exc
        return {"confirmed": clean.confirmed, "intolerances": clean.intolerances, "severity": clean.severity}

    def update(self, instance: PeerAllergyProfile, validated_data: dict) -> PeerAllergyProfile:
        instance.revision += 1
        return super().update(instance, validated_data)


class PeerAllergyProfileView(generics.RetrieveUpdateAPIView):
    """The idiomatic DRF peer of GET/PUT /api/allergies/, as a user who did not pick this service would write it:
    `rest_framework.authtoken` TokenAuthentication, a ModelSerializer, a generic RetrieveUpdateAPIView.

    No outbox, no sync state, no row lock: it does less than ours, which only makes the comparison harder for us.
    """

    authentication_classes = [DRFTokenAuthentication]
    permission_classes = [IsAuthenticated]
    serializer_class = PeerAllergyProfileSerializer

    def get_object(self) -> PeerAllergyProfile:
        profile, _ = PeerAllergyProfile.objects.get_or_create(user=self.request.user)
        return profile


VALID_SEVERITIES = {"anaphylactic", "severe", "moderate", "intolerance"}


class SeedAllergyProfileSerializer(serializers.Serializer):
    """Seed 000 §6.2, as written."""

    confirmed = serializers.ListField(child=serializers.CharField(), default=list)
    intolerances = serializers.ListField(child=serializers.CharField(), default=list)
    severity = serializers.DictField(child=serializers.CharField(), default=dict)

    def validate_severity(self, value: dict) -> dict:
        for allergen, level in value.items():
            if level not in VALID_SEVERITIES:
                raise serializers.ValidationError(f"Invalid severity '{level}' for '{allergen}'.")
        return value

    def validate(self, data: dict) -> dict:
        missing = (set(data.get("confirmed", [])) | set(data.get("intolerances", []))) - set(data.get("severity", {}))
        if missing:
            raise serializers.ValidationError(f"Missing severity for allergen(s): {', '.join(sorted(missing))}")
        return data


class SyncAllergiesView(APIView):
    """Seed 000 §6.4: save locally, then call the Agent inside the request (3 tries, 1 s/2 s, 10 s timeout).

    Authentication is this project's token authentication, so that only the Agent call differs
    from PUT /api/allergies/.
    """

    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        profile = SyncAllergyProfile.objects.filter(user=request.user).first()
        if profile is None:
            return Response({"confirmed": [], "intolerances": [], "severity": {}})
        return Response({"confirmed": profile.confirmed, "intolerances": profile.intolerances,
                         "severity": profile.severity})

    def put(self, request: Request) -> Response:
        serializer = SeedAllergyProfileSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        SyncAllergyProfile.objects.update_or_create(
            user=request.user,
            defaults={"confirmed": data["confirmed"], "intolerances": data["intolerances"],
                      "severity": data["severity"]},
        )
        try:
            result = update_agent_allergies_rollback_unsafe(
                uid=str(request.user.uid),
                confirmed=data["confirmed"],
                intolerances=data["intolerances"],
                severity=data["severity"],
            )
        except requests.RequestException as exc:
            logger.critical("ALLERGY SYNC FAILED for uid=%s: %s", request.user.uid, type(exc).__name__)
            return Response({"message": "Your allergy profile was saved but could not be synced.",
                             "error_code": "AGENT_SYNC_FAILED"}, status=503)
        return Response({"message": "Allergy profile updated.", "allergy_flags": result.get("allergy_flags", [])})
