"""GET/DELETE /api/interactions/ over the local history mirror (DESIGN §7)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from agent_bridge import events, services
from agent_bridge.models import InteractionMirror, OutboxEvent

URL = "/api/interactions/"


def item(i: int) -> dict:
    return {
        "id": i,
        "uid": "x",
        "user_query": f"q{i}",
        "agent_response": {},
        "ui_type": "list",
        "restaurant_ids": [i],
        "allergy_warnings_shown": False,
        "allergens_flagged": [],
        "created_at": f"2026-01-01T00:00:{i % 60:02d}Z",
    }


def refresh_events() -> int:
    return OutboxEvent.objects.filter(type=events.INTERACTIONS_REFRESH_REQUESTED).count()


def test_a_missing_mirror_is_empty_and_requests_a_refresh_once(auth_client) -> None:
    body = auth_client.get(URL).json()
    assert body == {"interactions": [], "total": 0, "limit": 20, "offset": 0, "synced_at": None, "refreshing": True}
    assert refresh_events() == 1

    # At most one outstanding refresh per user.
    assert auth_client.get(URL).json()["refreshing"] is True
    assert refresh_events() == 1


def test_a_fresh_mirror_is_served_without_a_refresh(auth_client, verified_user) -> None:
    assert services.interaction_mirror_store(uid=verified_user.uid, items=[item(i) for i in range(30, 0, -1)], total=30)
    body = auth_client.get(URL, {"limit": 5, "offset": 10}).json()
    assert [i["id"] for i in body["interactions"]] == [20, 19, 18, 17, 16]
    assert body["total"] == 30 and body["limit"] == 5 and body["offset"] == 10
    assert body["synced_at"] and body["refreshing"] is False
    assert body["interactions"][0]["agent_response"] == {} and "uid" not in body["interactions"][0]
    assert refresh_events() == 0


def test_a_stale_mirror_is_served_and_refreshed(auth_client, verified_user, settings) -> None:
    settings.INTERACTIONS_MIRROR_MAX_AGE_SECONDS = 60
    services.interaction_mirror_store(uid=verified_user.uid, items=[item(1)], total=1)
    InteractionMirror.objects.filter(user=verified_user).update(synced_at=timezone.now() - timedelta(seconds=61))

    body = auth_client.get(URL).json()
    assert [i["id"] for i in body["interactions"]] == [1]
    assert body["refreshing"] is True
    assert refresh_events() == 1

    # The consumer stores the new copy: the marker goes, the mirror is fresh.
    services.interaction_mirror_store(uid=verified_user.uid, items=[item(2), item(1)], total=2)
    body = auth_client.get(URL).json()
    assert body["refreshing"] is False and body["total"] == 2
    assert refresh_events() == 1


def test_a_lost_refresh_request_is_made_again_after_the_max_age(auth_client, verified_user, settings) -> None:
    settings.INTERACTIONS_MIRROR_MAX_AGE_SECONDS = 60
    auth_client.get(URL)
    InteractionMirror.objects.filter(user=verified_user).update(
        refresh_requested_at=timezone.now() - timedelta(seconds=61)
    )
    assert auth_client.get(URL).json()["refreshing"] is True
    assert refresh_events() == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "x"}, "offset"),
    ],
)
def test_bad_pagination_is_a_400_naming_the_field(auth_client, query: dict, field: str) -> None:
    response = auth_client.get(URL, query)
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert refresh_events() == 0


def test_limit_100_is_accepted(auth_client) -> None:
    assert auth_client.get(URL, {"limit": 100}).json()["limit"] == 100


def test_delete_clears_the_mirror_and_queues_the_clear(auth_client, verified_user) -> None:
    services.interaction_mirror_store(uid=verified_user.uid, items=[item(1)], total=1)
    response = auth_client.delete(URL)
    assert response.status_code == 202
    assert OutboxEvent.objects.filter(type=events.INTERACTIONS_CLEAR_REQUESTED, uid=verified_user.uid).count() == 1
    body = auth_client.get(URL).json()
    assert body["interactions"] == [] and body["total"] == 0 and body["refreshing"] is False


def test_a_refresh_fetched_before_a_clear_does_not_bring_the_history_back(auth_client, verified_user) -> None:
    auth_client.delete(URL)
    assert services.interaction_mirror_store(uid=verified_user.uid, items=[item(1)], total=1) is False
    assert auth_client.get(URL).json()["interactions"] == []

    services.interaction_mirror_clear_done(uid=verified_user.uid)
    assert services.interaction_mirror_store(uid=verified_user.uid, items=[item(2)], total=1) is True
    assert [i["id"] for i in auth_client.get(URL).json()["interactions"]] == [2]


@pytest.mark.parametrize("method", ["get", "delete"])
def test_authentication_is_required(api_client, db, method: str) -> None:
    assert getattr(api_client, method)(URL).status_code in (401, 403)


def test_refresh_asks_for_a_fetch_now_even_when_fresh(auth_client, verified_user) -> None:
    services.interaction_mirror_store(uid=verified_user.uid, items=[item(1)], total=1)

    assert auth_client.get(URL).json()["refreshing"] is False
    assert refresh_events() == 0
    assert auth_client.get(URL, {"refresh": "1"}).json()["refreshing"] is True
    assert auth_client.get(URL, {"refresh": "1"}).json()["refreshing"] is True
    assert refresh_events() == 1  # one outstanding at a time


def test_refresh_is_throttled_per_user_but_plain_reads_are_not(auth_client, settings, clear_cache) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "interactions_refresh": "2/min"}
    assert [auth_client.get(URL, {"refresh": "true"}).status_code for _ in range(2)] == [200, 200]

    refused = auth_client.get(URL, {"refresh": "true"})
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled" and refused["Retry-After"]
    assert [auth_client.get(URL).status_code for _ in range(5)] == [200] * 5
