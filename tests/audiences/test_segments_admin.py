"""The segment admin: the estimate endpoint, saving through the form, static lists."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from audiences.models import Segment
from audiences.services import segment_create_static
from tests.factories import DeviceFactory, SubscriberFactory

pytestmark = pytest.mark.django_db
ESTIMATE = "admin:audiences_segment_estimate"


def spain(*extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "match": "all",
        "conditions": [{"field": "country", "op": "in", "value": ["ES"]}, *extra],
        "exclude": {"match": "any", "conditions": []},
    }


def post_estimate(client: Client, payload: Any) -> Any:
    return client.post(reverse(ESTIMATE), data=json.dumps(payload), content_type="application/json")


def test_estimate_needs_a_staff_login_and_permission(client: Client) -> None:
    response = post_estimate(client, {"rules": spain()})
    assert response.status_code == 302 and "/login/" in response["Location"]
    staff = User.objects.create_user("clerk", password="x", is_staff=True)
    client.force_login(staff)
    assert post_estimate(client, {"rules": spain()}).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_segment"))
    assert post_estimate(client, {"rules": spain()}).status_code == 200
    assert client.get(reverse(ESTIMATE)).status_code == 405


def test_estimate_answers_sizes_and_a_sample(admin_client_logged_in: Client) -> None:
    madrid = SubscriberFactory(external_id="madrid-1", country="ES", first_name="Lucía", last_name="García")
    DeviceFactory(subscriber=madrid)
    SubscriberFactory(external_id="madrid-2", country="ES", purchase_count=2)
    SubscriberFactory(external_id="berlin", country="DE")
    response = post_estimate(admin_client_logged_in, {"rules": spain(), "topic": None})
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and (body["total"], body["reachable"]) == (2, 1)
    assert {s["external_id"] for s in body["sample"]} == {"madrid-1", "madrid-2"}
    assert {"name": "Lucía García", "country": "ES"}.items() <= body["sample"][1].items()
    assert body["sample"][1]["url"] == reverse("admin:audiences_subscriber_change", args=[madrid.pk])

    narrowed = post_estimate(
        admin_client_logged_in, {"rules": spain({"field": "purchase_count", "op": "gte", "value": "1"})}
    )
    assert narrowed.json()["total"] == 1


def test_estimate_reports_problems_by_path(admin_client_logged_in: Client) -> None:
    rules = spain({"field": "total_spent", "op": "gt", "value": "plenty"})
    response = post_estimate(admin_client_logged_in, {"rules": rules})
    assert response.status_code == 400
    assert response.json() == {
        "ok": False,
        "problems": [
            {
                "path": "conditions.1",
                "where": "Condition 2",
                "message": "“Total spent” >: enter a number, e.g. 100.",
            }
        ],
    }
    assert post_estimate(admin_client_logged_in, {"rules": spain(), "topic": 999}).status_code == 400
    bad_json = admin_client_logged_in.post(reverse(ESTIMATE), data="{nope", content_type="application/json")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["message"]
    huge = post_estimate(admin_client_logged_in, {"rules": spain(), "padding": "x" * 300_000})
    assert huge.status_code == 413


def test_add_change_and_reopen_a_rule_segment(admin_client_logged_in: Client) -> None:
    SubscriberFactory(country="ES")
    add = reverse("admin:audiences_segment_add")
    page = admin_client_logged_in.get(add)
    assert page.status_code == 200
    assert b'id="segment-catalog"' in page.content and b"notifyhub/segments/builder.js" in page.content

    data = {"name": "Spain", "description": "", "kind": "dynamic", "rules": json.dumps(spain())}
    response = admin_client_logged_in.post(add, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    segment = Segment.objects.get(name="Spain")
    assert segment.rules["conditions"][0] == {"field": "country", "op": "in", "value": ["ES"]}
    assert (segment.last_count, segment.last_reachable) == (1, 0)

    change = reverse("admin:audiences_segment_change", args=[segment.pk])
    reopened = admin_client_logged_in.get(change)
    assert json.dumps(segment.rules).replace('"', "&quot;").encode() in reopened.content

    invalid = {
        "name": "Spain",
        "description": "",
        "rules": json.dumps(spain({"field": "segment", "op": "in", "value": segment.pk})),
    }
    rejected = admin_client_logged_in.post(change, invalid)
    assert rejected.status_code == 200
    assert "a segment cannot include itself" in rejected.content.decode()
    segment.refresh_from_db()
    assert len(segment.rules["conditions"]) == 1


def test_static_list_from_pasted_external_ids(admin_client_logged_in: Client) -> None:
    SubscriberFactory(external_id="c-1")
    SubscriberFactory(external_id="c-2")
    add = reverse("admin:audiences_segment_add")
    refused = admin_client_logged_in.post(
        add, {"name": "VIP", "kind": "static", "rules": "", "paste_external_ids": "c-1\nghost"}
    )
    assert refused.status_code == 200
    assert "1 of these ids match no subscriber: ghost" in refused.content.decode()
    assert not Segment.objects.exists()

    created = admin_client_logged_in.post(
        add, {"name": "VIP", "kind": "static", "rules": "", "paste_external_ids": "c-1, c-2"}
    )
    assert created.status_code == 302
    segment = Segment.objects.get(name="VIP")
    assert segment.kind == "static" and segment.members.count() == 2 and segment.last_count == 2
    page = admin_client_logged_in.get(reverse("admin:audiences_segment_change", args=[segment.pk]))
    assert b'id="segment-members"' in page.content and b"<code>c-1</code>" in page.content


def test_changelist_shows_sizes_and_recounts(admin_client_logged_in: Client) -> None:
    SubscriberFactory(external_id="m-1")
    segment = segment_create_static(name="Members", subscribers=[])
    Segment.objects.filter(pk=segment.pk).update(last_count=None)
    changelist = reverse("admin:audiences_segment_changelist")
    response = admin_client_logged_in.post(
        changelist, {"action": "recount", "_selected_action": [segment.pk]}, follow=True
    )
    assert response.status_code == 200
    segment.refresh_from_db()
    assert segment.last_count == 0


def test_a_conflict_found_only_at_save_time_is_a_message_not_a_500(
    admin_client_logged_in: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another marketer's concurrent edit can create a cycle after this form validated."""
    from audiences.admin import segments as segment_admin
    from audiences.services import SegmentError

    def conflicting_save(**kwargs: Any) -> Segment:
        raise SegmentError("“Spain” now belongs to a loop of segments; reload and check its rules.")

    monkeypatch.setattr(segment_admin, "segment_save", conflicting_save)
    add = reverse("admin:audiences_segment_add")
    data = {"name": "Spain", "description": "", "kind": "dynamic", "rules": json.dumps(spain())}
    response = admin_client_logged_in.post(add, data, follow=True)
    assert response.status_code == 200
    assert "belongs to a loop of segments" in response.content.decode()
    assert not Segment.objects.filter(name="Spain").exists()
