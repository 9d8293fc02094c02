"""Settings for the sample blog.

This file holds what the app needs wherever it runs, and reads what depends on
where it runs from the environment, as a 12-factor app does: sitec sets
SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and REDIS_URL for every process of the
app, and points DJANGO_SETTINGS_MODULE at a module of its own that imports this
one, then sets the databases, caches, static root and the spec's layered
settings. The app imports nothing of sitec's. Without that environment, on a
developer's machine, it runs on SQLite with DEBUG on.
"""

import sys
import os
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

# Where it runs, sitec's environment says so (SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL...)
# and DJANGO_SETTINGS_MODULE names sitec's settings module, which imports this one and
# then sets DATABASES, CACHES, STATIC_ROOT and the spec's layered settings. On a
# developer's machine there is none of that: DEBUG, SQLite and a throwaway key.
SECRET_KEY = os.environ.get("SECRET_KEY", "dev-only-not-a-secret")
DEBUG = "SECRET_KEY" not in os.environ
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}

# Celery (blog/celery.py): the broker and the result backend are the app's redis,
# bound as `cache` in the spec (sitec's REDIS_URL); without it, tasks run in the
# calling process.
_redis = os.environ.get("REDIS_URL")
CELERY_BROKER_URL = _redis or "memory://"
CELERY_RESULT_BACKEND = _redis or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = _redis is None
# Stores the worker's name with each result: /count shows who ran the task.
CELERY_RESULT_EXTENDED = True
