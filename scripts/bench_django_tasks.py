"""The Django task of ``scripts/bench_django.py`` (the plain one: ``bench_tasks.noop``)."""

from django.tasks import task


@task
def noop_django() -> None:
    return None
