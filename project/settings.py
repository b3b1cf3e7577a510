"""Kairos backend settings.

Every value comes from the environment (or a `.env` file beside manage.py), see
DESIGN.md §3. Defaults give a working local setup: SQLite, the embedded bus and the
local Agent double on port 4021.
"""
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEV_SECRET_KEY = "django-insecure-dev-only-key-never-use-in-production"  # noqa: S105 (refused outside debug)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=DEV_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise environ.ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off")

ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "identity",
    "allergies",
    "agent_bridge",
    "consumers",
    "throttling",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ (admin, Swagger UI) from gunicorn too, where DEBUG=0 serves nothing.
    "project.middleware.StaticFilesMiddleware",
    "project.middleware.RequestIdMiddleware",
    "project.middleware.NoStoreMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Django's session, auth and messages middleware, skipped under /api/ (the admin's, not the API's).
    "project.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "project.middleware.AuthenticationMiddleware",
    "project.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "project.urls"
# No HTML 301 (or DEBUG's RuntimeError for a POST) for a missing slash: project.errors.unrouted
# answers a JSON 308 that keeps the method and the body.
APPEND_SLASH = False
CSRF_FAILURE_VIEW = "project.errors.json_csrf_failure"
WSGI_APPLICATION = "project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the API read while the consumer writes; IMMEDIATE takes the write lock
    # at BEGIN so two processes never deadlock upgrading a read lock.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # psycopg prepares a statement after this many runs on a connection. Only the hand-written hot statements
    # (project.rawsql) bind parameters on the server and can be prepared; the ORM's never are. "off" behind a
    # pooler in transaction mode that does not keep prepared statements (PgBouncer before 1.21).
    _prepare = env.str("DATABASE_PREPARE_THRESHOLD", default="5").strip().lower()
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None if _prepare == "off" else int(_prepare)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "identity.User"

# --- Passwords ------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
# WhiteNoise also finds files in the apps, so the API serves its static files whether or not
# `collectstatic` ran (the container image runs it; a checkout need not).
WHITENOISE_USE_FINDERS = True

# --- CORS -----------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=["http://localhost:3000"])
# In DEBUG, also any port on localhost / 127.0.0.1 (Next 3000, Vite 5173, Angular 4200, ...).
CORS_ALLOWED_ORIGIN_REGEXES = [r"^http://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"] if DEBUG else []
# Browser code may read these: the request id to quote, and how long to wait after a 429.
CORS_EXPOSE_HEADERS = ["X-Request-ID", "Retry-After"]
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "x-auth-token",
    "x-request-id",
)

# --- Security (production) ------------------------------------------------------
# Reverse proxies in front of the API that append the peer to X-Forwarded-For. 0 (default): the
# header is ignored and clients are counted by REMOTE_ADDR; never more than there really are.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# X-Forwarded-Proto is only believed behind a trusted proxy (which sets it): from a client it
# would let plain HTTP pass as HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if TRUSTED_PROXY_COUNT > 0 else None
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# Probes and the scraper speak plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^api/health/(live/|ready/)?$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
# Preloading puts the domain (and every subdomain) into the browsers' built-in HTTPS-only lists,
# which takes months to undo: the domain's owner opts in, never a default.
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
if not SECURE_HSTS_PRELOAD:
    # security.W021 ("SECURE_HSTS_PRELOAD is not True") is that deliberate choice.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
X_FRAME_OPTIONS = "DENY"

# --- REST framework -------------------------------------------------------------
# Throttles (identity/throttles.py; the policy: docs/api.md, "Throttles"). Windows are fixed and
# short so that a refusal caused by someone else's attempts ends within minutes.
DEFAULT_THROTTLE_RATES = {
    "login": "10/min",  # per client address
    # per (email, address): what one attacking address runs into. Same window as the per-email
    # limit and well below it, so that one address can never spend the per-email budget.
    "login_email_address": "5/5min",
    "login_email": "20/5min",  # per email from every address: bounds distributed guessing
    "signup": "20/hour",
    "signup_email": "5/10min",
    "email_action": "10/hour",  # resend verification + password reset, one count
    "email_action_email_address": "2/10min",
    "email_action_email": "6/10min",
    "reconfirm": "5/10min",  # password change and account deletion, per user
    "interactions_refresh": "6/min",  # GET /api/interactions/?refresh=1, per user
    "export": "5/hour",  # GET /api/account/export/, per user
}
_throttle_env = env.str("THROTTLE_RATES", default="")
THROTTLING_ENABLED = _throttle_env.strip().lower() != "off"
THROTTLE_RATES = dict(DEFAULT_THROTTLE_RATES)
if THROTTLING_ENABLED and _throttle_env:
    for item in _throttle_env.split(","):
        scope, _, rate = item.partition("=")
        THROTTLE_RATES[scope.strip()] = rate.strip()
# Where the counts live: Redis when set (production; redis://host:port/db), else the
# throttling_counter table of the default database.
REDIS_URL = env.str("REDIS_URL", default="")
THROTTLE_KEY_PREFIX = env.str("THROTTLE_KEY_PREFIX", default="kairos:throttle:")
REST_FRAMEWORK = {
    # Every endpoint needs a user token unless it says otherwise (public views set
    # authentication_classes = [] and permission_classes = [AllowAny]).
    "DEFAULT_AUTHENTICATION_CLASSES": ["identity.authentication.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser plus the DATA_UPLOAD_MAX_MEMORY_SIZE limit (413).
    "DEFAULT_PARSER_CLASSES": ["project.parsers.JSONParser"],
    # Only for DRF's own throttles (ours use throttling.clients.client_address): never trust the
    # whole X-Forwarded-For.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    "EXCEPTION_HANDLER": "project.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "project.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kairos Backend API",
    "DESCRIPTION": (
        "Identity, allergy profile and preferences of Kairos users; each change reaches the Agent (the AI "
        "service) shortly after, through events. Every error is JSON `{detail, code}` (validation errors add "
        "`errors`: field → [{message, code}]); the codes are listed in docs/api.md."
    ),
    "TAGS": [
        {"name": "account", "description": "Signup, verification, login, passwords, deletion."},
        {"name": "profile", "description": "The signed-in user and their preferences."},
        {"name": "allergies", "description": "The allergy profile (a food-safety record) and the vocabulary."},
        {"name": "interactions", "description": "The chat history kept by the Agent."},
        {"name": "internal", "description": "Service to service and operations: not for the frontend."},
    ],
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Enum names the generated TypeScript types use (without these: CodeEnum, StateEnum...).
    "ENUM_NAME_OVERRIDES": {
        "SyncCodeEnum": "allergies.selectors.SYNC_CODES",
        "SyncStateEnum": "allergies.selectors.SYNC_STATES",
        "SeverityEnum": "allergies.validation.SEVERITY_LEVELS",
        "PriceTierEnum": "identity.preferences.PRICE_TIERS",
        # The probes' `database`, `broker` and `redis` share one set of states.
        "DependencyStateEnum": "project.health.DEPENDENCY_STATES",
    },
}

# Largest request body the API accepts; bigger bodies get a 413 JSON error.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=64 * 1024)

# --- Accounts -------------------------------------------------------------------
AUTH_TOKEN_TTL = timedelta(days=env.int("AUTH_TOKEN_TTL_DAYS", default=14))
EMAIL_VERIFICATION_TTL = timedelta(days=env.int("EMAIL_VERIFICATION_TTL_DAYS", default=3))
PASSWORD_RESET_TTL = timedelta(hours=env.int("PASSWORD_RESET_TTL_HOURS", default=2))
FRONTEND_BASE_URL = env.str("FRONTEND_BASE_URL", default="http://localhost:3000")
EMAIL_CHANGE_TTL = timedelta(hours=env.int("EMAIL_CHANGE_TTL_HOURS", default=24))
# A login from a device label not seen on the account for this long mails the user.
NEW_DEVICE_MEMORY_DAYS = env.int("NEW_DEVICE_MEMORY_DAYS", default=180)
# Unsent notification facts (identity.MailNotice, e.g. a deleted account's address) die after this.
MAIL_NOTICE_TTL_HOURS = env.int("MAIL_NOTICE_TTL_HOURS", default=72)
ALLERGY_HISTORY_RETENTION_DAYS = env.int("ALLERGY_HISTORY_RETENTION_DAYS", default=730)
# Django's reset-token generator reads this (seconds).
PASSWORD_RESET_TIMEOUT = int(PASSWORD_RESET_TTL.total_seconds())

# Django's cache (no throttle counts live here: see REDIS_URL). Redis when configured, else the
# database table created by identity's migration 0003.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": env.str("CACHE_TABLE", default="kairos_cache"),
        }
    }

# --- Email ----------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(BASE_DIR / "sent_emails"))
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Kairos <no-reply@kairos.local>")

# --- Agent and bus --------------------------------------------------------------
AGENT_BASE_URL = env.str("AGENT_BASE_URL", default="http://localhost:4021")
AGENT_SERVICE_TOKEN = env.str("AGENT_SERVICE_TOKEN", default="")
AGENT_TIMEOUT_SECONDS = env.float("AGENT_TIMEOUT_SECONDS", default=10.0)
# Verification (agent_bridge/verification.py, docs/operations.md#verification). After an Agent
# call of unknown outcome the user is read back after each of these delays (growing; their sum,
# 187 s by default, is the horizon within which a late apply by the Agent is caught).
AGENT_READ_BACK_DELAYS_SECONDS = env.list("AGENT_READ_BACK_DELAYS_SECONDS", cast=float, default=[2, 5, 15, 45, 120])
# reconcile_agent: most Agent reads per second; --continuous verifies every user within the period.
AGENT_RECONCILE_READS_PER_SECOND = env.float("AGENT_RECONCILE_READS_PER_SECOND", default=5.0)
AGENT_RECONCILE_PERIOD_SECONDS = env.int("AGENT_RECONCILE_PERIOD_SECONDS", default=86400)

AMQP_URL = env.str("AMQP_URL", default="")
AMQP_QUEUE_TYPE = env.str("AMQP_QUEUE_TYPE", default="classic")  # classic | quorum
# Partition queues <prefix>.work.<n>: a user's events all go to one (a hash of the uid), and each
# has one active consumer at a time. More partitions than consumers lets consumers share them.
AMQP_PARTITIONS = env.int("AMQP_PARTITIONS", default=4)
# Agent calls in flight at once inside one `manage.py consume` process, for different users (a
# user's own events stay serial and in order); split between its connections.
BUS_CONSUMER_CONCURRENCY = env.int("BUS_CONSUMER_CONCURRENCY", default=8)
# Consumer loops per `manage.py consume` process, each with its own connection; RabbitMQ
# connections share the partitions fairly.
BUS_CONSUMER_CONNECTIONS = env.int("BUS_CONSUMER_CONNECTIONS", default=1)
# Unacknowledged messages per partition queue a consumer holds: enough for every handler of the
# connection to be busy from one partition, and to coalesce a user's run of events.
AMQP_PREFETCH = env.int(
    "AMQP_PREFETCH", default=max(10, 4 * -(-BUS_CONSUMER_CONCURRENCY // max(1, BUS_CONSUMER_CONNECTIONS)))
)
# Seconds between AMQP heartbeats; daemons keep them going while a handler waits on the Agent.
AMQP_HEARTBEAT_SECONDS = env.int("AMQP_HEARTBEAT_SECONDS", default=30)
# Quorum work queues: deliveries before RabbitMQ dead-letters a message (RabbitMQ 4 default: 20).
AMQP_DELIVERY_LIMIT = env.int("AMQP_DELIVERY_LIMIT", default=20)
# Names of the RabbitMQ topology start with this prefix (tests isolate themselves with it).
BUS_PREFIX = env.str("BUS_PREFIX", default="kairos")

# Transient failures: immediate tries with jittered backoff, then delayed retries.
BUS_IMMEDIATE_TRIES = env.int("BUS_IMMEDIATE_TRIES", default=3)
BUS_IMMEDIATE_BACKOFF_MAX_SECONDS = env.float("BUS_IMMEDIATE_BACKOFF_MAX_SECONDS", default=2.0)
BUS_RETRY_DELAYS_SECONDS = env.list("BUS_RETRY_DELAYS_SECONDS", cast=int, default=[5, 30, 120, 600, 3600])
BUS_POLL_INTERVAL_SECONDS = env.float("BUS_POLL_INTERVAL_SECONDS", default=0.05)
# PostgreSQL wakes the relay and embedded consumer by NOTIFY at commit; they still poll this often.
BUS_NOTIFY_FALLBACK_SECONDS = env.float("BUS_NOTIFY_FALLBACK_SECONDS", default=1.0)
BUS_RELAY_BATCH_SIZE = env.int("BUS_RELAY_BATCH_SIZE", default=200)
# RabbitMQ mode: an event handed to the broker but not settled by then is published again by
# the relay. The outbox, not the broker, is the record: a broker crash can lose a message that
# was being dead-lettered between queues (classic queues do that at most once).
BUS_REPUBLISH_AFTER_SECONDS = env.int("BUS_REPUBLISH_AFTER_SECONDS", default=900)
# How long a consumer owns a user (lease, embedded claim) without renewing it; it renews every
# third of it while a handler runs, so this bounds how long a crashed consumer blocks a user
# (agent_bridge/timing.py derives every other window from these settings).
BUS_OWNERSHIP_SECONDS = env.float("BUS_OWNERSHIP_SECONDS", default=15.0)
OUTBOX_RETENTION_DAYS = env.int("OUTBOX_RETENTION_DAYS", default=7)
# Dead outbox rows and dead letters are kept this long for an operator to replay, then pruned.
BUS_DEAD_RETENTION_DAYS = env.int("BUS_DEAD_RETENTION_DAYS", default=30)
# The consumer (embedded bus) or the relay (RabbitMQ) prunes the outbox this often.
BUS_PRUNE_INTERVAL_SECONDS = env.float("BUS_PRUNE_INTERVAL_SECONDS", default=3600.0)
# `manage.py housekeeping` (the compose stack's housekeeping service): commands and intervals.
HOUSEKEEPING_JOBS = env.str("HOUSEKEEPING_JOBS", default="prune_outbox=1h,prune_accounts=1h")
INTERACTIONS_MIRROR_MAX_AGE_SECONDS = env.int("INTERACTIONS_MIRROR_MAX_AGE_SECONDS", default=300)

# --- Operations: probes, metrics, traces (docs/operations.md) ---------------------
# Readiness also requires the broker in RabbitMQ mode (0: the API stays in the load balancer
# through a broker outage; the outbox holds the events meanwhile).
HEALTH_READY_BROKER = env.bool("HEALTH_READY_BROKER", default=True)
# Bearer token for the API's GET /metrics (at least 32 characters; unset: /metrics is off).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The daemons' (consume, relay) own metrics port and address; 0: no metrics server.
METRICS_PORT = env.int("METRICS_PORT", default=0)
METRICS_ADDR = env.str("METRICS_ADDR", default="127.0.0.1")

# --- Logging --------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="text")  # text | json
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "project.logging.TextFormatter"},
        "json": {"()": "project.logging.JsonFormatter"},
    },
    "filters": {"request_id": {"()": "project.logging.RequestIdFilter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default handlers print its records a second time, in another format.
        "django": {"handlers": [], "propagate": True},
        # runserver's own access lines would repeat project.middleware's (and in another format).
        "django.server": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "pika": {"level": "WARNING"},
    },
}
