import uuid

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from identity.addresses import email_canonical


class UserManager(BaseUserManager["User"]):
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
    """A Kairos account. `uid` is the stable public id shared with the Agent; never a credential."""

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    email = models.EmailField(max_length=254, unique=True)
    username = models.CharField(max_length=150)
    is_verified = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["username"]

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="identity_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email


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
