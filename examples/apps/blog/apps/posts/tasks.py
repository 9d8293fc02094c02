from celery import shared_task

from .models import Post


@shared_task
def count_posts():
    """Runs in the worker: proves it reads the same database as the web app."""
    return Post.objects.count()
