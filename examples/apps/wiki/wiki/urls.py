from django.db import connection
from django.http import HttpResponse
from django.urls import path


def index(request):
    """The front page: which database the spec bound as `default`."""
    return HttpResponse(
        f"The wiki, on {connection.vendor} database {connection.settings_dict['NAME']}.\n",
        content_type="text/plain",
    )


def healthz(request):
    """Liveness for the agent and the balancer: touches no database."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("", index), path("healthz", healthz)]
