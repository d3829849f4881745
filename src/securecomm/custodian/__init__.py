"""The custodian service (Flask, under gunicorn): ``securecomm custodian serve --name NAME``."""
