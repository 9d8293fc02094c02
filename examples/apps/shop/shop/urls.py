from django.conf import settings
from django.http import HttpResponse
from django.urls import path


def index(request):
    """The front page: one setting from the spec's layers."""
    return HttpResponse(
        f"The shop. Payments time out after {settings.PAYMENT_TIMEOUT_SECONDS} s.\n",
        content_type="text/plain",
    )


def healthz(request):
    """Liveness for the agent and the balancer: touches no database."""
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("", index), path("healthz", healthz)]
