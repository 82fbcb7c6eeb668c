from django.apps import AppConfig


class QsupConfig(AppConfig):
    """``INSTALLED_APPS = [..., "qsup.django"]`` adds ``manage.py qsup``."""

    name = "qsup.django"
    label = "qsup"
    verbose_name = "qsup"
