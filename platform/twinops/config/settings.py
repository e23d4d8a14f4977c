"""Django settings for TwinOps. Every value comes from the environment and fails loudly when malformed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

from twinops.config import embedded
from twinops.config.env import env_bool, env_int, env_networks, env_positive, env_time_zone
from twinops.config.secret_files import secret_file_text

BASE_DIR = Path(__file__).resolve().parents[1]  # platform/twinops
PROJECT_ROOT = embedded.PROJECT_ROOT
FRONTEND_DIR = PROJECT_ROOT / "frontend"

ENVIRONMENT = os.environ.get("TWINOPS_ENV", "development")
if ENVIRONMENT not in {"development", "test", "production"}:
    raise ImproperlyConfigured(f"TWINOPS_ENV must be development, test or production, not {ENVIRONMENT!r}")
PRODUCTION = ENVIRONMENT == "production"


def _secret_key() -> str:
    key = os.environ.get("TWINOPS_SECRET_KEY")
    if key:
        if PRODUCTION and len(key) < 50:
            raise ImproperlyConfigured("TWINOPS_SECRET_KEY must be at least 50 characters in production")
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("TWINOPS_SECRET_KEY must be set in production")
    # development: generated once, kept with the embedded data
    return secret_file_text(embedded.data_home() / "secret_key", lambda: secrets.token_urlsafe(64))


SECRET_KEY = _secret_key()
DEBUG = env_bool("TWINOPS_DEBUG", not PRODUCTION)
ALLOWED_HOSTS = [h for h in os.environ.get("TWINOPS_ALLOWED_HOSTS", "" if PRODUCTION else "*").split(",") if h]
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("TWINOPS_ALLOWED_HOSTS must list the host names in production")
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("TWINOPS_CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "twinops.core",
    "twinops.audit",
    "twinops.accounts",
    "twinops.lines",
    "twinops.telemetry",
    "twinops.onboarding",
    "twinops.modeling",
    "twinops.recommendations",
    "twinops.releases",
    "twinops.auditing",
    "twinops.web",
    "twinops.demo",
]

MIDDLEWARE = [
    "twinops.core.forwarded.TrustedProxyHeadersMiddleware",  # first: X-Forwarded-Proto only from a trusted proxy
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",  # every page needs a login unless marked otherwise
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "twinops.core.errors.FriendlyErrorsMiddleware",  # styled 403/404, never the debug page with the URL map
]

ROOT_URLCONF = "twinops.config.urls"
WSGI_APPLICATION = "twinops.config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [FRONTEND_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "twinops.core.context_processors.roles",
            ]
        },
    }
]

DATABASES = {"default": embedded.parse_database_url(embedded.database_url())}
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TWINOPS_TEST_DB", "test_twinops")}
# The role that owns the tables and runs migrations (config/database_roles.py); the embedded server sets it. Unset
# with an external DATABASE_URL: migrations run as the application's role, which then owns (and could alter) them.
DATABASE_OWNER = (
    embedded.parse_database_url(os.environ["DATABASE_OWNER_URL"], variable="DATABASE_OWNER_URL")
    if os.environ.get("DATABASE_OWNER_URL")
    else None
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = embedded.redis_url()
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL.replace("redis+socket://", "unix://"),
        "KEY_PREFIX": "twinops",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "line-list"
LOGOUT_REDIRECT_URL = "login"
# A sign-in lasts one shift by default (Django's two weeks outlive every shift handover on a shared control-room PC).
SESSION_COOKIE_AGE = env_int("TWINOPS_SESSION_HOURS", 12, minimum=1) * 3600
# Failed logins allowed per (username, client address) per window before further attempts are refused.
LOGIN_RATE_LIMIT = env_int("TWINOPS_LOGIN_RATE_LIMIT", 5, minimum=1)
LOGIN_RATE_WINDOW_S = env_int("TWINOPS_LOGIN_RATE_WINDOW_S", 300, minimum=1)
# The reverse proxies (addresses or networks) whose X-Forwarded-For is believed: the client is the rightmost address
# in it that is not one of them. Empty (the default): the connecting address is the client, the header is ignored.
TRUSTED_PROXIES = env_networks("TWINOPS_TRUSTED_PROXIES")

LANGUAGE_CODE = "en"
# Pages show times in the plant's zone (IANA name, e.g. Europe/Berlin), with the zone; the database keeps UTC.
TIME_ZONE = env_time_zone("TWINOPS_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
import plotly as _plotly  # noqa: E402  plotly.js ships inside the plotly wheel: served from there, never a CDN

STATICFILES_DIRS = [FRONTEND_DIR / "static", ("vendor/plotly", Path(_plotly.__file__).parent / "package_data")]
STATIC_ROOT = embedded.data_home() / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_ROOT = embedded.data_home() / "media"

# Uploads: spec files and history files go through the onboarding pages; API batches through the ingest API.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("TWINOPS_UPLOAD_MAX_BYTES", 10 * 1024 * 1024, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
HISTORY_UPLOAD_MAX_BYTES = env_int("TWINOPS_HISTORY_UPLOAD_MAX_BYTES", 512 * 1024 * 1024, minimum=1)
INGEST_API_MAX_BYTES = env_int("TWINOPS_INGEST_API_MAX_BYTES", 8 * 1024 * 1024, minimum=1)

# --- Celery -----------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True  # progress and results live in PostgreSQL rows, not in a result backend
CELERY_TASK_ACKS_LATE = True  # a task is acknowledged only when done: a crash re-delivers it
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int(
    "TWINOPS_TASK_HARD_LIMIT_S", 3 * 3600, minimum=600
)  # longest task (training); soft: 300 s less
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 300
# Redis re-delivers unacknowledged messages after the visibility timeout: it must outlast any task's hard limit,
# or a long task would run twice at once.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 3600}
# The Celery wiring in one place: the queues, the queue of every task (by its stable name; nothing names a queue at
# send time) and every periodic task. tests/platform/config/test_celery.py checks them against the registered tasks.
TWINOPS_QUEUES = ("ingest", "train", "optimize", "default")  # scale path: GPU nodes run `twinops worker -Q train`
CELERY_TASK_QUEUES = tuple(Queue(name, routing_key=name) for name in TWINOPS_QUEUES)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "telemetry.history_import": {"queue": "ingest"},
    "telemetry.resend_queued_imports": {"queue": "default"},
    "modeling.train_twin": {"queue": "train"},  # the only queue that wants a GPU
    "modeling.requeue_stale_jobs": {"queue": "default"},
    "modeling.retrain_due": {"queue": "default"},
    "recommendations.recommend_all": {"queue": "optimize"},  # optimize workers hold the cached controllers
    "recommendations.recommend_line": {"queue": "optimize"},
    "recommendations.resend_dead_slots": {"queue": "default"},
    "recommendations.expire": {"queue": "optimize"},
    "recommendations.outcomes_record": {"queue": "optimize"},
    "audit.anchor": {"queue": "default"},
}
CELERY_TIMEZONE = "UTC"
# The recommendation period: beat's schedule below and the idempotency slot (recommendations.conf.every_s) alike.
TWINOPS_RECOMMEND_EVERY_S = env_positive("TWINOPS_RECOMMEND_EVERY_S", 300.0)
CELERY_BEAT_SCHEDULE = {  # schedules in seconds; the routes above choose the queue
    "modeling.requeue_stale_jobs": {"task": "modeling.requeue_stale_jobs", "schedule": 60.0},  # dead or lost jobs
    "modeling.retrain_due": {"task": "modeling.retrain_due", "schedule": 600.0},  # TWINOPS_RETRAIN_EVERY_H
    "telemetry.resend_queued_imports": {  # imports whose message was lost
        "task": "telemetry.resend_queued_imports",
        "schedule": 60.0,
    },
    "recommendations.recommend_all": {
        "task": "recommendations.recommend_all",
        "schedule": TWINOPS_RECOMMEND_EVERY_S,
    },  # one slot per period
    "recommendations.resend_dead_slots": {  # slots whose worker died: again within the slot, or FAILED with why
        "task": "recommendations.resend_dead_slots",
        "schedule": min(60.0, TWINOPS_RECOMMEND_EVERY_S / 4),
    },
    "recommendations.expire": {"task": "recommendations.expire", "schedule": 60.0},  # pending past their TTL
    "recommendations.outcomes_record": {  # proposals whose horizon has passed: what the plant did
        "task": "recommendations.outcomes_record",
        "schedule": 60.0,
    },
    "audit.anchor": {"task": "audit.anchor", "schedule": 60.0},  # sign the chain head outside the database
}

# --- Security (production) --------------------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the cookie-less meta tag; keep default off
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("TWINOPS_SSL_REDIRECT", True)
    if TRUSTED_PROXIES:  # the TLS proxy's X-Forwarded-Proto, and only its (core.forwarded drops anyone else's)
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("TWINOPS_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("TWINOPS_LOG_LEVEL", "WARNING")},
}
