from django.conf import settings
from django.core.cache import cache
from celery.exceptions import TimeoutError as NoAnswer
from django.http import HttpResponse
from django.shortcuts import render

from .models import Post
from .tasks import count_posts

# How long the page waits for a worker's answer before it says none came.
TASK_WAIT_SECONDS = 10


def index(request):
    """The front page: posts from the database, a title from the settings layers,
    and a counter kept in the cache (redis on a runner, memory on a laptop)."""
    cache.add("front-page-views", 0, timeout=None)
    views = cache.incr("front-page-views")
    return render(
        request,
        "posts/index.html",
        {
            "site_title": settings.SITE_TITLE,
            "posts": Post.objects.all(),
            "views": views,
            "secure": request.is_secure(),
        },
    )


def count(request):
    """A task round trip: the request enqueues `count_posts` on the app's Redis,
    a Celery worker runs it against the database, and the page shows its answer
    and which worker gave it (a laptop without Redis runs it in this process)."""
    result = count_posts.delay()
    try:
        posts = result.get(timeout=TASK_WAIT_SECONDS)
    except NoAnswer:
        return HttpResponse(
            f"no worker answered in {TASK_WAIT_SECONDS} s\n",
            status=504,
            content_type="text/plain",
        )
    # `worker` is stored with the result (CELERY_RESULT_EXTENDED); an eager
    # result, run in this process, has none.
    worker = getattr(result, "worker", None) or "this process"
    return HttpResponse(
        f"{posts} posts, counted by {worker}\n", content_type="text/plain"
    )


def healthz(request):
    """Liveness for the agent and the balancer: touches neither database nor cache."""
    return HttpResponse("ok", content_type="text/plain")
