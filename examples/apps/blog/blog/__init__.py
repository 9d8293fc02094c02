# Loads Celery with Django, so `@shared_task` functions use the app's broker.
from .celery import app as celery_app

__all__ = ("celery_app",)
