from django.urls import path

from posts import views

urlpatterns = [
    path("", views.index, name="index"),
    path("count", views.count, name="count"),
    path("healthz", views.healthz, name="healthz"),
]
