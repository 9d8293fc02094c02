from django.conf import settings
from django.core.cache import cache
from django.http import HttpResponse
from django.shortcuts import render

from .models import Post


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


def healthz(request):
    """Liveness for the agent and the balancer: touches neither database nor cache."""
    return HttpResponse("ok", content_type="text/plain")
