"""The relay service (Flask, under gunicorn): ``securecomm relay serve``."""
