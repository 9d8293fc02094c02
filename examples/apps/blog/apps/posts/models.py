from django.db import models


class Post(models.Model):
    title = models.CharField(max_length=200)
    body = models.TextField()
    published = models.DateTimeField()

    class Meta:
        ordering = ["-published"]

    def __str__(self):
        return self.title
