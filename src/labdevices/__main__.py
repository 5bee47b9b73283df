"""``python -m labdevices`` is the ``labdevices`` command."""

from .cli import main

main()
