"""The three roles of the workspace, as Django groups (created by a migration).

* **Marketer** — builds audiences and campaigns (drafts), sends tests, submits for review.
* **Approver** — a Marketer who may also approve and launch (any audience size), and
  recover runs (retry failed messages, resume a run paused by an error).
* **Viewer** — reads everything, changes nothing.

``roles_sync`` is idempotent: the migration runs it, and so may ``seed_demo``; adding
a model later means adding it here and a migration that calls it again.
"""

from __future__ import annotations

from typing import Any

MARKETER = "Marketer"
APPROVER = "Approver"
VIEWER = "Viewer"

# Apps whose models every role can see.
VIEW_APPS = ("audiences", "campaigns", "delivery", "django_celery_beat")
# (app_label, model) → actions a Marketer may take besides viewing.
MARKETER_CHANGES: dict[tuple[str, str], tuple[str, ...]] = {
    ("campaigns", "campaign"): ("add", "change"),
    ("campaigns", "variant"): ("add", "change", "delete"),
    ("campaigns", "testdevice"): ("add", "change", "delete"),
    ("audiences", "segment"): ("add", "change", "delete"),
    ("audiences", "importjob"): ("add", "change"),
    ("audiences", "subscriber"): ("change",),
    ("audiences", "topic"): ("add", "change"),
    ("audiences", "attributedefinition"): ("add", "change"),
}
MARKETER_EXTRA = (("campaigns", "send_test_campaign"),)
# Approvers also recover runs: "retry failed" and resuming a run paused by an error.
APPROVER_EXTRA = (("campaigns", "approve_campaign"), ("delivery", "change_run"))


def roles_sync(apps: Any) -> None:
    """Create or update the three groups' permissions (works with historical ``apps`` too)."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")

    def perms(pairs: list[tuple[str, str]]) -> list[Any]:
        wanted = set(pairs)
        found = [
            p
            for p in Permission.objects.filter(
                content_type__app_label__in={a for a, _c in wanted}
            ).select_related("content_type")
            if (p.content_type.app_label, p.codename) in wanted
        ]
        return found

    view = [
        (p.content_type.app_label, p.codename)
        for p in Permission.objects.filter(
            content_type__app_label__in=VIEW_APPS, codename__startswith="view_"
        ).select_related("content_type")
    ]
    marketer = list(view)
    for (app_label, model), actions in MARKETER_CHANGES.items():
        marketer += [(app_label, f"{action}_{model}") for action in actions]
    marketer += list(MARKETER_EXTRA)
    approver = marketer + list(APPROVER_EXTRA)
    for name, pairs in ((VIEWER, view), (MARKETER, marketer), (APPROVER, approver)):
        group, _created = Group.objects.get_or_create(name=name)
        group.permissions.set(perms(pairs))
