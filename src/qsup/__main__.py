"""``python -m qsup`` is the ``qsup`` command."""

from qsup.cli import main

main()
