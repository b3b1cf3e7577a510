"""Input and output shapes of the account-management API: email change, sessions, notification
settings and the data export (docs/accounts.md describes each field)."""
from rest_framework import serializers

from agent_bridge.serializers import InteractionSerializer
from allergies.serializers import AllergyProfileOutputSerializer, AllergyRevisionSerializer
from identity.serializers import PreferencesDocumentField, StrictCharField, StrictEmailField


class EmailChangeInputSerializer(serializers.Serializer):
    new_email = StrictEmailField(max_length=254)
    password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class TokenInputSerializer(serializers.Serializer):
    token = StrictCharField(max_length=512, trim_whitespace=True)


class SessionSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="Pass to DELETE /api/sessions/{id}/.")
    device = serializers.CharField(help_text='"<browser> on <system>" from the User-Agent at login.')
    network = serializers.CharField(
        help_text='The /24 (IPv4) or /48 (IPv6) network the login came from, e.g. "203.0.113.0/24"; "" if unknown.'
    )
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True, help_text="Updated at most every 5 minutes.")
    expires_at = serializers.DateTimeField()
    current = serializers.BooleanField(help_text="True for the session of this request's token.")


class SessionListSerializer(serializers.Serializer):
    sessions = SessionSerializer(many=True, help_text="Live sessions, newest first.")


class NotificationSettingsSerializer(serializers.Serializer):
    new_device_login = serializers.BooleanField(help_text="Mail me when my account signs in from a new device.")


class NotificationSettingsInputSerializer(serializers.Serializer):
    new_device_login = serializers.BooleanField()

    def to_internal_value(self, data):
        # BooleanField accepts "yes", 1, "on": a settings API takes JSON booleans only.
        if isinstance(data, dict) and "new_device_login" in data and not isinstance(data["new_device_login"], bool):
            raise serializers.ValidationError({"new_device_login": ["Must be true or false."]}, code="invalid")
        return super().to_internal_value(data)


# --- The export document ------------------------------------------------------------------
class ExportAccountSerializer(serializers.Serializer):
    uid = serializers.UUIDField()
    username = serializers.CharField()
    email = serializers.EmailField()
    is_verified = serializers.BooleanField()
    date_joined = serializers.DateTimeField()
    last_login = serializers.DateTimeField(allow_null=True)


class ExportEmailChangeSerializer(serializers.Serializer):
    new_email = serializers.EmailField()
    requested_at = serializers.DateTimeField()


class ExportSessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    device = serializers.CharField()
    network = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    current = serializers.BooleanField()


class ExportAllergiesSerializer(serializers.Serializer):
    profile = AllergyProfileOutputSerializer(help_text="As GET /api/allergies/ answers, sync state included.")
    history = AllergyRevisionSerializer(many=True, help_text="Every kept revision, oldest first.")


class ExportPreferencesSerializer(serializers.Serializer):
    preferences = PreferencesDocumentField()
    revision = serializers.IntegerField()
    synced_revision = serializers.IntegerField(help_text="The newest revision the Agent is known to hold.")
    updated_at = serializers.DateTimeField(allow_null=True)


class ExportInteractionsSerializer(serializers.Serializer):
    items = InteractionSerializer(many=True, help_text="The local mirror, newest first.")
    agent_total = serializers.IntegerField()
    synced_at = serializers.DateTimeField(allow_null=True)


class ExportNoticeDetailsSerializer(serializers.Serializer):
    device = serializers.CharField(required=False, help_text="new_device_login: the session's device label.")
    network = serializers.CharField(required=False, help_text="new_device_login: the /24 or /48 network.")
    at = serializers.CharField(required=False, help_text="new_device_login: the login time (ISO 8601).")


class ExportMailNoticeSerializer(serializers.Serializer):
    kind = serializers.CharField()
    email = serializers.CharField(help_text='The captured recipient (the old address of an email change), or "".')
    created_at = serializers.DateTimeField()
    details = ExportNoticeDetailsSerializer()


class AccountExportSerializer(serializers.Serializer):
    format = serializers.CharField(help_text='Always "kairos-account-export".')
    version = serializers.IntegerField(help_text="1; bumped when a field changes meaning.")
    exported_at = serializers.DateTimeField()
    account = ExportAccountSerializer()
    pending_email_change = ExportEmailChangeSerializer(allow_null=True)
    notification_settings = NotificationSettingsSerializer()
    sessions = ExportSessionSerializer(many=True, help_text="Every session we still keep, ended ones included.")
    allergies = ExportAllergiesSerializer()
    preferences = ExportPreferencesSerializer()
    interactions = ExportInteractionsSerializer()
    pending_notices = ExportMailNoticeSerializer(many=True, help_text="Notification mails not sent yet.")
