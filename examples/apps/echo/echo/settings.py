"""Settings for the sample echo app (ASGI), as in ../../blog/blog/settings.py: what the app
needs wherever it runs is here; what depends on where it runs comes from the
environment and from the settings module sitec writes beside it (see the end)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

INSTALLED_APPS = ["django.contrib.staticfiles"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "echo.urls"
ASGI_APPLICATION = "echo.asgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected_static"

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
