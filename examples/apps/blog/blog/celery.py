"""The app's Celery instance, for `worker celery { command = "celery -A blog worker" }`.

Its settings are Django's `CELERY_*` settings (see blog/settings.py): the broker
and the result backend are the app's redis, which sitec names in `REDIS_URL`.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "blog.settings")

app = Celery("blog")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
