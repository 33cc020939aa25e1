"""One settings module, driven by the environment (12-factor).

With no environment at all the platform runs on an embedded default: SQLite and a
file-system Celery broker under ``var/``, a file-based cache every process shares,
and the sandbox emulators standing in for Google Ads and Meta. ``DATABASE_URL`` and
``REDIS_URL`` switch to PostgreSQL and Redis. ``.env.example`` lists every variable.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# An empty variable means "the default", as `.env.example` writes them (`DATABASE_URL=`):
# django-environ would otherwise read "" as a value (an empty database URL, an empty list).
for _name in [name for name, value in os.environ.items() if value == ""]:
    del os.environ[_name]

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _persistent_secret_key() -> str:
    """A random key kept under var/ so sessions survive restarts of a local run."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="") or _persistent_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(api|v1)/.*$"

# Behind TLS (Fly's proxy terminates it and sets X-Forwarded-Proto): one switch turns
# on everything `check --deploy` asks for. Off by default so a local http run works.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
if SECURE_SSL_REDIRECT:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
# Readiness and metrics are scraped over plain http inside the private network.
SECURE_REDIRECT_EXEMPT = [r"^readyz$", r"^metrics$"]

# The client's address (throttles, login lockouts: adsplatform/client_ip.py). Forwarding headers
# are trusted only when a proxy is named here; anyone can send X-Forwarded-For. On Fly the proxy
# sets Fly-Client-IP (fly.toml); TRUSTED_PROXY_COUNT picks the entry of a list header such as
# X-Forwarded-For that our own outermost proxy appended (1 = the last); TRUSTED_PROXY_NETWORKS,
# when set, limits which peers may speak for the client (unset: every peer is the proxy).
TRUSTED_PROXY_CLIENT_IP_HEADER = env.str("TRUSTED_PROXY_CLIENT_IP_HEADER", default="")
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=1)
TRUSTED_PROXY_NETWORKS = env.list("TRUSTED_PROXY_NETWORKS", default=[])

# Prometheus scrapes with "Authorization: Bearer <METRICS_TOKEN>"; unset: /metrics is open
# (local runs); `check --deploy` refuses production settings without it (adsplatform/checks.py).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Fernet keys for secrets stored in the database (adsplatform/secret_fields.py), newest first;
# unset: one derived from SECRET_KEY (check --deploy refuses that in production).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "corsheaders",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "axes",
    "csp",
    "adsplatform",
    "platforms",
    "campaigns",
    "connections",
    "conversions",
    "webhooks",
    "optimization",
    "dashboard",
]

MIDDLEWARE = [
    "adsplatform.middleware.HealthzMiddleware",
    "adsplatform.middleware.RequestIdMiddleware",
    "adsplatform.middleware.AccessLogMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "adsplatform.middleware.BodySizeLimitMiddleware",
    "adsplatform.middleware.MachineReceiverMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a lockout flagged during the view into its answer.
    "axes.middleware.AxesMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "adsplatform.urls"
WSGI_APPLICATION = "adsplatform.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

# --- Database -----------------------------------------------------------------------
DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: wait for the writer instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend whose per-request health check asks the socket before pinging the server.
    DATABASES["default"]["ENGINE"] = "adsplatform.db.postgresql"
    # The hot statements' cursor (adsplatform.db.prepared_cursor) prepares them on first use; Django's
    # own cursors bind on the client and are never prepared. Turn it off behind a pooler that
    # cannot keep prepared statements (PgBouncer in transaction mode before 1.21).
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
        0 if env.bool("DATABASE_PREPARED_STATEMENTS", default=True) else None
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and broker -----------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache, failing soft during a Redis outage (adsplatform/cache.py).
            "BACKEND": "adsplatform.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "ads",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    # Not local memory: a sync in the worker must invalidate what the web process
    # cached, so the embedded default uses a cache all local processes share.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

CELERY_BROKER_URL = REDIS_URL or "filesystem://"
if not REDIS_URL:
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Every retry delay and countdown must stay below the visibility timeout, or Redis
    # redelivers the task while it still waits (checked at start-up: adsplatform.checks).
    # socket_timeout bounds every synchronous Redis command (a publish, an ack) on a connection the
    # broker dropped without closing: without it kombu waits forever there (its own docs' advice).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_connect_timeout": 2, "socket_timeout": 10}
# The longest delay any task waits before a retry; quota waits longer than this are
# split into several retries rather than one long countdown.
TASK_MAX_RETRY_DELAY_SECONDS = env.int("TASK_MAX_RETRY_DELAY_SECONDS", default=15 * 60)
# Lead work goes first: Redis hands out lower numbers first (kombu's steps 0, 3, 6, 9), so every
# task defaults to 3 and the webhooks app publishes lead processing and the deliveries of urgent
# and high leads at 0, ahead of syncs, uploads and the other leads. Brokers without priorities
# (the embedded file broker) ignore both.
CELERY_TASK_DEFAULT_PRIORITY = 3
LEAD_TASK_PRIORITY = 0
# Beat writes the heartbeat the alert monitor reads however it is started (`celery beat` alone too).
CELERY_BEAT_SCHEDULER = "optimization.beat:HeartbeatScheduler"
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=30 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=25 * 60)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"
# Workers log through LOGGING (JSON with request ids), not Celery's own handlers.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Auth, API --------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# django-axes first: it refuses a locked-out username+address before any password is checked,
# and counts failures of every authenticate() call (admin login and the JWT token endpoint).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
# Username and address together: one guesser cannot lock a user out from everywhere, and a
# password sprayed over many usernames meets the per-address throttle instead.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "adsplatform.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "adsplatform.auth.lockout_response"
AXES_USERNAME_FORM_FIELD = "username"
AXES_VERBOSE = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "campaigns.authentication.JWTWithRolesAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["adsplatform.parsers.DepthLimitedJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["adsplatform.filters.StrictFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "adsplatform.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "adsplatform.errors.api_exception_handler",
    # No stock throttle may key on X-Forwarded-For: ours (adsplatform.throttling) use client_ip.
    "NUM_PROXIES": 0,
    "DEFAULT_THROTTLE_RATES": {
        "auth": env.str("AUTH_THROTTLE_RATE", default="20/min"),
    },
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=env.int("JWT_ACCESS_MINUTES", default=15)),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=env.int("JWT_REFRESH_DAYS", default=7)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": True,
    # Tokens carry a digest of the password hash; one issued before a password change or reset
    # no longer authenticates (refresh tokens are blacklisted too: adsplatform/auth.py).
    "CHECK_REVOKE_TOKEN": True,
    "REVOKE_TOKEN_CLAIM": "pwd",
    "SIGNING_KEY": env.str("JWT_SIGNING_KEY", default="") or SECRET_KEY,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "IBVI Ads Platform API",
    "DESCRIPTION": "Unified Google Ads and Meta campaigns, conversions, leads and budgets.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI and Redoc from our own static files (drf-spectacular-sidecar): no CDN, so the
    # Content-Security-Policy can stay at 'self'.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "adsplatform.schema.add_error_responses",
    ],
}

# JSON bodies nested deeper than this are refused with a 400 (adsplatform/parsers.py).
JSON_MAX_DEPTH = env.int("JSON_MAX_DEPTH", default=32)

# Content-Security-Policy on every page (django-csp 4). Scripts only from our origin or with the
# page's nonce; styles also inline, because Django admin, Swagger UI and Redoc set style
# attributes and inject <style> at run time. Redoc's search runs in a worker built from a blob.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, "'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Requests that carry data are refused above this size (413), before any parsing.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", default=1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Receivers that machines post to: they skip the browser-facing middleware (MachineReceiverMiddleware).
MACHINE_RECEIVER_URL_NAMES = ["webhook-zapier", "webhook-google-lead-form"]

# --- I18N, static -----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
LOGIN_URL = "admin:login"

# --- Email ------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ads-platform@localhost")

# --- Logging: JSON lines on stdout, each with the request id ------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "adsplatform.logging.RequestIdFilter"},
        "not_a_request_line": {"()": "adsplatform.logging.NotARequestLine"},
    },
    "formatters": {"json": {"()": "adsplatform.logging.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"level": LOG_LEVEL, "propagate": True},
        "celery": {"level": LOG_LEVEL, "propagate": True},
        # One line per request at INFO (probes' successes at DEBUG); django.request still adds
        # its WARNING for a 4xx and ERROR for a 5xx, with the traceback when there is one.
        "adsplatform.access": {"level": LOG_LEVEL, "propagate": True},
        # runserver's own request lines would repeat the access line with the query string.
        "django.server": {
            "handlers": ["stdout"],
            "level": LOG_LEVEL,
            "filters": ["not_a_request_line"],
            "propagate": False,
        },
        # Chatty transport loggers can print request metadata; keep them quiet.
        "urllib3": {"level": "WARNING"},
        # google-api-core turns propagation off on "google", so it needs the handler itself.
        "google": {"handlers": ["stdout"], "level": "WARNING", "propagate": False},
    },
}

# --- Operators and integration secrets -------------------------------------------------
SERVICE_API_KEY = env.str("SERVICE_API_KEY", default="")
WEBHOOK_SECRET = env.str("WEBHOOK_SECRET", default="")
GOOGLE_LEAD_FORM_KEY = env.str("GOOGLE_LEAD_FORM_KEY", default="")
# Unprocessed webhook events and unsent deliveries older than this are re-queued.
WEBHOOK_SWEEP_AFTER_SECONDS = env.int("WEBHOOK_SWEEP_AFTER_SECONDS", default=60)
LEAD_DELIVERY_TIMEOUT_SECONDS = env.int("LEAD_DELIVERY_TIMEOUT_SECONDS", default=10)
# Low-priority leads reach email and Slack in one digest per destination this often.
LEAD_DIGEST_INTERVAL_SECONDS = env.int("LEAD_DIGEST_INTERVAL_SECONDS", default=900)
# The lead stage at which a lead with a gclid becomes a Google conversion.
LEAD_CONVERSION_STAGE = env.str("LEAD_CONVERSION_STAGE", default="qualified")
# Google conversion action (id or resource name) for those leads; unset: the active
# Google action of the lead's campaign's account.
LEAD_CONVERSION_ACTION = env.str("LEAD_CONVERSION_ACTION", default="")
LEADS_DEFAULT_PHONE_COUNTRY_CODE = env.str("LEADS_DEFAULT_PHONE_COUNTRY_CODE", default="1")

# --- Ad platforms ---------------------------------------------------------------------------
GOOGLE_ADS_DEVELOPER_TOKEN = env.str("GOOGLE_ADS_DEVELOPER_TOKEN", default="")
GOOGLE_ADS_CLIENT_ID = env.str("GOOGLE_ADS_CLIENT_ID", default="")
GOOGLE_ADS_CLIENT_SECRET = env.str("GOOGLE_ADS_CLIENT_SECRET", default="")
GOOGLE_ADS_REFRESH_TOKEN = env.str("GOOGLE_ADS_REFRESH_TOKEN", default="")
GOOGLE_ADS_LOGIN_CUSTOMER_ID = env.str("GOOGLE_ADS_LOGIN_CUSTOMER_ID", default="")
GOOGLE_ADS_API_VERSION = env.str("GOOGLE_ADS_API_VERSION", default="v26")
GOOGLE_ADS_ENDPOINT = env.str("GOOGLE_ADS_ENDPOINT", default="googleads.googleapis.com")
GOOGLE_ADS_TOKEN_URI = env.str("GOOGLE_ADS_TOKEN_URI", default="https://oauth2.googleapis.com/token")
GOOGLE_ADS_USE_PROTO_PLUS = env.bool("GOOGLE_ADS_USE_PROTO_PLUS", default=False)

META_APP_ID = env.str("META_APP_ID", default="")
META_APP_SECRET = env.str("META_APP_SECRET", default="")
META_ACCESS_TOKEN = env.str("META_ACCESS_TOKEN", default="")
META_BUSINESS_ID = env.str("META_BUSINESS_ID", default="")
META_PIXEL_ID = env.str("META_PIXEL_ID", default="")
META_API_VERSION = env.str("META_API_VERSION", default="v26.0")
META_GRAPH_URL = env.str("META_GRAPH_URL", default="https://graph.facebook.com")

_has_credentials = bool(GOOGLE_ADS_REFRESH_TOKEN or META_ACCESS_TOKEN)
ADS_SANDBOX = env.bool("ADS_SANDBOX", default=not _has_credentials)
ADS_SANDBOX_HOST = env.str("ADS_SANDBOX_HOST", default="127.0.0.1")
ADS_SANDBOX_GOOGLE_PORT = env.int("ADS_SANDBOX_GOOGLE_PORT", default=8481)
ADS_SANDBOX_META_PORT = env.int("ADS_SANDBOX_META_PORT", default=8482)
ADS_SANDBOX_OAUTH_PORT = env.int("ADS_SANDBOX_OAUTH_PORT", default=8483)
# The credentials the product presents to the sandbox. The defaults mirror the ones the sandbox
# accepts (platforms/sandbox/credentials.py); the product does not import the sandbox to learn them.
ADS_SANDBOX_GOOGLE_CLIENT_ID = env.str("ADS_SANDBOX_GOOGLE_CLIENT_ID", default="sandbox-client-id")
ADS_SANDBOX_GOOGLE_CLIENT_SECRET = env.str("ADS_SANDBOX_GOOGLE_CLIENT_SECRET", default="sandbox-client-secret")
ADS_SANDBOX_GOOGLE_REFRESH_TOKEN = env.str("ADS_SANDBOX_GOOGLE_REFRESH_TOKEN", default="sandbox-refresh-token")
ADS_SANDBOX_GOOGLE_DEVELOPER_TOKEN = env.str("ADS_SANDBOX_GOOGLE_DEVELOPER_TOKEN", default="sandbox-developer-token")
ADS_SANDBOX_GOOGLE_MANAGER_ID = env.str("ADS_SANDBOX_GOOGLE_MANAGER_ID", default="1000000001")
ADS_SANDBOX_META_ACCESS_TOKEN = env.str("ADS_SANDBOX_META_ACCESS_TOKEN", default="sandbox-meta-access-token")
ADS_SANDBOX_META_APP_ID = env.str("ADS_SANDBOX_META_APP_ID", default="100000000000001")
ADS_SANDBOX_META_APP_SECRET = env.str("ADS_SANDBOX_META_APP_SECRET", default="sandbox-meta-app-secret")
ADS_SANDBOX_META_BUSINESS_ID = env.str("ADS_SANDBOX_META_BUSINESS_ID", default="200000000000001")
# The sandbox's scale: campaigns per account (0: the small demo data set) and days of metrics.
ADS_SANDBOX_CAMPAIGNS = env.int("ADS_SANDBOX_CAMPAIGNS", default=0)
ADS_SANDBOX_DAYS = env.int("ADS_SANDBOX_DAYS", default=90)
ADS_SANDBOX_FAULTS_GOOGLE = env.str("ADS_SANDBOX_FAULTS_GOOGLE", default="")
ADS_SANDBOX_FAULTS_META = env.str("ADS_SANDBOX_FAULTS_META", default="")
ADS_SANDBOX_DIR = Path(env.str("ADS_SANDBOX_DIR", default=str(VAR_DIR / "sandbox")))

# Conversion uploads: attempts before a row is failed; how long a row may stay
# "uploading" before it is taken back and resent (same order id / event id, so the
# platform dedupes); the first backoff step (doubling, with jitter).
CONVERSIONS_UPLOAD_MAX_ATTEMPTS = env.int("CONVERSIONS_UPLOAD_MAX_ATTEMPTS", default=8)
CONVERSIONS_UPLOAD_LEASE_SECONDS = env.int("CONVERSIONS_UPLOAD_LEASE_SECONDS", default=600)
CONVERSIONS_RETRY_BASE_SECONDS = env.int("CONVERSIONS_RETRY_BASE_SECONDS", default=30)
CONVERSIONS_UPLOAD_ON_INGEST = env.bool("CONVERSIONS_UPLOAD_ON_INGEST", default=True)

# Alerts: who hears about them (email list; a Slack-compatible incoming webhook URL).
# Thresholds and optimizer guardrails have defaults in optimization/conf.py and can be
# overridden here by name.
ALERT_EMAIL_RECIPIENTS = env.list("ALERT_EMAIL_RECIPIENTS", default=[])
ALERT_SLACK_WEBHOOK_URL = env.str("ALERT_SLACK_WEBHOOK_URL", default="")

# Sync windows: conversions land late, so each sync re-reads recent days.
SYNC_LOOKBACK_DAYS_GOOGLE = env.int("SYNC_LOOKBACK_DAYS_GOOGLE", default=14)
SYNC_LOOKBACK_DAYS_META = env.int("SYNC_LOOKBACK_DAYS_META", default=28)

# Connections: the OAuth clients operators sign in through ("Connect Google Ads" / "Connect Meta";
# with ADS_SANDBOX the sandbox's client and app are used) and how long before expiry a Meta user
# token is exchanged again (every connection is checked every 15 minutes).
GOOGLE_OAUTH_CLIENT_ID = env.str("GOOGLE_OAUTH_CLIENT_ID", default=GOOGLE_ADS_CLIENT_ID)
GOOGLE_OAUTH_CLIENT_SECRET = env.str("GOOGLE_OAUTH_CLIENT_SECRET", default=GOOGLE_ADS_CLIENT_SECRET)
GOOGLE_OAUTH_AUTHORIZE_URL = env.str(
    "GOOGLE_OAUTH_AUTHORIZE_URL", default="https://accounts.google.com/o/oauth2/v2/auth"
)
GOOGLE_OAUTH_REVOKE_URL = env.str("GOOGLE_OAUTH_REVOKE_URL", default="https://oauth2.googleapis.com/revoke")
META_OAUTH_DIALOG_URL = env.str("META_OAUTH_DIALOG_URL", default="https://www.facebook.com")
META_TOKEN_REEXCHANGE_DAYS = env.int("META_TOKEN_REEXCHANGE_DAYS", default=10)
# First backfill of a newly added account: this many days (per account in admin), read in chunks
# of BACKFILL_CHUNK_DAYS at a low queue priority so scheduled syncs of other accounts go first.
INITIAL_BACKFILL_DAYS = env.int("INITIAL_BACKFILL_DAYS", default=90)
BACKFILL_CHUNK_DAYS = env.int("BACKFILL_CHUNK_DAYS", default=30)
BACKFILL_MAX_CONCURRENT = env.int("BACKFILL_MAX_CONCURRENT", default=2)
