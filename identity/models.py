import uuid

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from identity.addresses import EmailNotCanonical, email_canonical, email_canonical_or_none


class UserManager(BaseUserManager["User"]):
    def get_by_natural_key(self, username: str) -> "User":
        # Django's ModelBackend (the admin login) and createsuperuser look users up here.
        canonical = email_canonical_or_none(username)
        if canonical is None:
            raise self.model.DoesNotExist
        return self.get(email=canonical)

    def create_user(self, email: str, password: str | None = None, **fields) -> "User":
        """Low level (test fixtures): no event. Code that creates accounts calls
        identity.services.user_register (or user_create), which queues the user for the Agent."""
        user = self.model(email=email_canonical(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **fields) -> "User":
        fields.update(is_staff=True, is_superuser=True, is_verified=True)
        fields.setdefault("username", email.split("@")[0])
        from identity import services  # services imports this module

        # `createsuperuser` ends here: through the service like signup, so the user reaches the Agent.
        return services.user_register(user=self.model(email=email_canonical(email), **fields), password=password)


class User(AbstractBaseUser, PermissionsMixin):
    """A Kairos account. `uid` is the stable public id shared with the Agent; never a credential.

    `email` holds the canonical form (identity.addresses.email_canonical), so uniqueness and
    every lookup are exact comparisons on it, the same on SQLite and PostgreSQL.
    """

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    username = models.CharField(max_length=150)
    is_verified = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # Notification settings (GET/PATCH /api/notifications/). Security mails (password, email,
    # deletion) cannot be turned off; the new-device login mail can.
    notify_new_device = models.BooleanField(default=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["username"]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        # Model forms (the admin) call this: an edited address is stored canonical too.
        super().clean()
        try:
            self.email = email_canonical(self.email)
        except EmailNotCanonical as exc:
            raise ValidationError({"email": str(exc)}) from exc


class AuthToken(models.Model):
    """A login credential. Only the SHA-256 of the secret is stored: a database leak gives no tokens.

    The secret is 32 random bytes (see identity.tokens), so a fast unsalted hash is enough: there is
    nothing to brute-force, unlike a password.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="auth_tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # What GET /api/sessions/ shows (identity.devices): never the secret, never the full address.
    device_label = models.CharField(max_length=100, blank=True, default="")
    network = models.CharField(max_length=64, blank=True, default="", help_text="/24 or /48 of the client address")

    class Meta:
        indexes = [models.Index(fields=["user", "revoked_at"], name="authtoken_user_revoked")]

    def __str__(self) -> str:
        return f"token {self.pk} of user {self.user_id}"


class UserPreferences(models.Model):
    """Explicit taste preferences; `revision` counts changes, `synced_revision` what the Agent has.

    `reset_keys`: keys changed since the last delivery in a way the Agent's merge cannot express
    (a value or key removed); the consumer resets them at the Agent first (identity.preferences).
    """

    user = models.OneToOneField(User, on_delete=models.CASCADE, primary_key=True, related_name="preferences")
    data = models.JSONField(default=dict)
    reset_keys = models.JSONField(default=list, blank=True)
    revision = models.PositiveIntegerField(default=0)
    synced_revision = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "user preferences"

    def __str__(self) -> str:
        return f"preferences of user {self.user_id} (revision {self.revision})"


class EmailChangeRequest(models.Model):
    """A requested, not yet confirmed change of address (POST /api/email/change/).

    The link sent to `new_email` carries a signature over this row's id only (identity.tokens), so
    neither the address nor a secret is in the link's readable payload, the outbox or the broker.
    One live request per user: a new one replaces it; confirming or erasing the account deletes it.
    `old_email` pins the request to the address it was made from: once that changes, the link dies.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="email_change_requests")
    new_email = models.EmailField(max_length=254)
    old_email = models.EmailField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    # Set when the link is mailed: a second event for the same request (a retry, a redelivery)
    # sends nothing more.
    link_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"email change request {self.pk} of user {self.user_id}"


class MailNotice(models.Model):
    """The facts a notification mail reports, captured when they happen, deleted once it is sent.

    The consumer sends mails long after the request (and after the account is gone, for the
    deletion notice), so what it cannot look up then is captured here: the old address of an
    email change, the address of a deleted account, the device of a new-device login. No foreign
    key: the deletion notice outlives its user. Rows are deleted when the mail is sent, with the
    account (except the deletion notice itself) and, unsent, after MAIL_NOTICE_TTL
    (identity.services.account_data_prune).
    """

    class Kind(models.TextChoices):
        EMAIL_CHANGED = "email_changed"
        ACCOUNT_DELETED = "account_deleted"
        NEW_DEVICE_LOGIN = "new_device_login"

    uid = models.UUIDField(db_index=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    email = models.EmailField(max_length=254, blank=True, default="", help_text="Only where the account cannot give it")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} notice for {self.uid}"
