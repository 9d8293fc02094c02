"""Seeds the two posts the front page shows, so a fresh deploy has something to read."""

from datetime import datetime, timezone

from django.db import migrations

POSTS = [
    (
        "Hello from a runner",
        "This page came out of Postgres, through gunicorn, behind nginx, all set up by sitec.",
        datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc),
    ),
    (
        "Static files never touch Python",
        "The stylesheet of this page is served by nginx from collected_static/.",
        datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc),
    ),
]


def seed(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    for title, body, published in POSTS:
        Post.objects.get_or_create(title=title, defaults={"body": body, "published": published})


def unseed(apps, schema_editor):
    Post = apps.get_model("posts", "Post")
    Post.objects.filter(title__in=[title for title, _, _ in POSTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("posts", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
