"""The example shop's settings, plus a second backend whose qsup tables are reached through
another alias ("queue", the same database on its own connection): enqueue waits for commit."""

from shop.settings import *  # noqa: F403
from shop.settings import DATABASES, TASKS

DATABASES["queue"] = dict(DATABASES["default"])
TASKS = {
    **TASKS,
    "elsewhere": {"BACKEND": "qsup.django.TaskBackend", "OPTIONS": {"database": "queue"}},
    "immediate": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
}
