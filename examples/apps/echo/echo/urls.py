import os

from django.http import HttpResponse
from django.urls import path


def index(request):
    """The front page: its greeting from the environment (the spec's
    `env { ECHO_GREETING = "..." }`), and where the WebSocket is."""
    greeting = os.environ.get("ECHO_GREETING", "Hello")
    return HttpResponse(
        f"{greeting}. The echo app: a WebSocket at /ws/echo/ sends back what it gets.\n",
        content_type="text/plain",
    )


def healthz(request):
    """Liveness for the agent and the balancer: touches no database."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("", index), path("healthz", healthz)]
