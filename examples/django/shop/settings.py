"""A small shop whose background tasks run under ``qsup serve`` (see the README's Django
section). The database: SHOP_DATABASE_URL, else a local PostgreSQL."""

import os

from psycopg.conninfo import conninfo_to_dict

DEBUG = False
SECRET_KEY = "example-only"  # noqa: S105 - an example project
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = ["qsup.django", "orders"]  # qsup.django: manage.py qsup
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_db = conninfo_to_dict(os.environ.get("SHOP_DATABASE_URL", "postgresql://postgres@127.0.0.1/shop"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname"),
        "USER": _db.get("user"),
        "PASSWORD": _db.get("password"),
        "HOST": _db.get("host"),
        "PORT": _db.get("port"),
    }
}
# the qsup tables live in the default database: enqueue joins the caller's transaction
TASKS = {
    "default": {
        "BACKEND": "qsup.django.TaskBackend",
        "QUEUES": ["default", "mail"],
        "OPTIONS": {"max_retries": 1, "timeout": 60},
    }
}
