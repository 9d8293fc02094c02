"""Settings for the sample shop, as in ../../blog/blog/settings.py: what the app
needs wherever it runs is here; what depends on where it runs comes from
`sitec_settings`, which sitec writes into each release on each runner and this
file imports last. Without it, on a developer's machine, SQLite and DEBUG."""

from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

INSTALLED_APPS = ["django.contrib.staticfiles"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "collected_static"
MEDIA_URL = "/media/"
MEDIA_ROOT = BASE_DIR / "media"
# The spec's settings block overrides it.
PAYMENT_TIMEOUT_SECONDS = 60

try:
    from sitec_settings import *  # noqa: E402,F401,F403 - written by sitec, see ../../README.md
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
