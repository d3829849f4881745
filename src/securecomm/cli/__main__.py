"""``python -m securecomm.cli``: what the services' processes and the tests run."""

from . import main

main()
