"""``python -m delivery.fcm_stub --port N`` — the stub without Django (see ``manage.py fcm_stub``)."""

from delivery.fcm_stub.cli import main

main()
