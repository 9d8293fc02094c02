#!/usr/bin/env python3
"""Django's command line for the sample echo app: `python manage.py runserver` on a
developer's machine, `migrate` and `collectstatic` when sitec deploys a release."""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "echo.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
