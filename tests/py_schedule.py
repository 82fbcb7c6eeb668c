"""A schedule registered from Python only (no ``[[schedules]]``): import it with --import."""

from qsup.scheduler import schedule
from tests.tasks import add

schedule("py-tick", "* * * * * *", add, args=[20, 22])
