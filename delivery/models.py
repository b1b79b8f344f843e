"""Delivery models. Runs and the delivery ledger arrive with the delivery engine;
for now: the liveness record of beat and the workers."""

from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """Last sign of life of a component ("beat→worker"), written by a periodic task.

    Beat schedules ``delivery.tasks.heartbeat``; a worker runs it and stamps this row,
    so one fresh row proves beat, the broker and a worker all work.
    """

    name = models.CharField(max_length=100, unique=True)
    beat_at = models.DateTimeField()
    hostname = models.CharField(max_length=255, blank=True)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"
