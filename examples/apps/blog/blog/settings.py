"""Settings for the sample blog.

This file holds what the app needs wherever it runs. What depends on where it
runs (databases, caches, allowed hosts, secrets, the layered settings of the
spec) comes from `sitec_settings`, a module sitec writes into each release on
each runner and imports at the end of this file, so it has the last word.
Without it, on a developer's machine, the app runs on SQLite with DEBUG on.
"""

import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# The project's own apps live in apps/. A spec that lists it in `paths` (as
# examples/epio.site does) puts it on the path already; this line makes the app
# run the same under a spec that lists only "." (the quickstart) and on a laptop.
if str(BASE_DIR / "apps") not in sys.path:
    sys.path.append(str(BASE_DIR / "apps"))

INSTALLED_APPS = [
    "django.contrib.staticfiles",
    "posts",  # apps/posts
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "blog.urls"
WSGI_APPLICATION = "blog.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected_static"

# Shown on the page; the spec's `settings` blocks override it.
SITE_TITLE = "A blog on a developer's machine"

try:
    from sitec_settings import *  # noqa: E402,F401,F403 - written by sitec, see ../README.md
except ModuleNotFoundError as missing:
    if missing.name != "sitec_settings":
        raise
    # A developer's machine: `python manage.py migrate && python manage.py runserver`.
    DEBUG = True
    SECRET_KEY = "dev-only-not-a-secret"
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
        }
    }

# Celery (blog/celery.py): the broker and the result backend are the app's redis,
# bound as `cache` in the spec; without sitec, tasks run in the calling process.
_redis = globals().get("SITEC_REDIS_URLS", {}).get("cache")
CELERY_BROKER_URL = _redis or "memory://"
CELERY_RESULT_BACKEND = _redis or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = _redis is None
