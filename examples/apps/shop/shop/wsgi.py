"""The WSGI entry point gunicorn loads (`wsgi = "shop.wsgi:application"` in the spec)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")

application = get_wsgi_application()
