"""Writes of the interaction-history mirror made by the consumer."""
from agent_bridge import services
from agent_bridge.models import InteractionMirror


def item(i: int) -> dict:
    return {
        "id": i,
        "uid": "x",
        "user_query": f"q{i}",
        "agent_response": {"big": "body"},
        "created_at": "2026-01-01T00:00:00Z",
    }


def test_store_keeps_the_agent_response_and_drops_the_uid(verified_user) -> None:
    assert services.interaction_mirror_store(uid=verified_user.uid, items=[item(1)], total=7) is True
    mirror = InteractionMirror.objects.get(user=verified_user)
    assert mirror.items == [
        {"id": 1, "user_query": "q1", "agent_response": {"big": "body"}, "created_at": "2026-01-01T00:00:00Z"}
    ]
    assert mirror.agent_total == 7 and mirror.synced_at is not None and mirror.refresh_requested_at is None


def test_clear_done_only_acts_on_a_pending_clear(verified_user) -> None:
    services.interaction_mirror_store(uid=verified_user.uid, items=[item(1)], total=1)
    services.interaction_mirror_clear_done(uid=verified_user.uid)
    assert len(InteractionMirror.objects.get(user=verified_user).items) == 1


def test_storing_for_a_deleted_user_is_a_no_op(verified_user) -> None:
    uid = verified_user.uid
    verified_user.delete()
    assert services.interaction_mirror_store(uid=uid, items=[item(1)], total=1) is False
    assert not InteractionMirror.objects.exists()
