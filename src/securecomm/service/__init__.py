"""What the relay and the custodians share: storage, signed requests, errors, serving.

This package and the services import Flask and SQLAlchemy; the core
library (everything directly in ``securecomm``) does not.
"""
