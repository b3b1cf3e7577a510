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


def test_store_keeps_the_summary_fields_only(member) -> None:
    assert services.interaction_mirror_store(uid=member.uid, items=[item(1)], total=7) is True
    mirror = InteractionMirror.objects.get(user=member)
    assert mirror.items == [{"id": 1, "user_query": "q1", "created_at": "2026-01-01T00:00:00Z"}]
    assert mirror.agent_total == 7 and mirror.synced_at is not None and mirror.refresh_requested_at is None


def test_clear_done_only_acts_on_a_pending_clear(member) -> None:
    services.interaction_mirror_store(uid=member.uid, items=[item(1)], total=1)
    services.interaction_mirror_clear_done(uid=member.uid)
    assert len(InteractionMirror.objects.get(user=member).items) == 1


def test_storing_for_a_deleted_user_is_a_no_op(member) -> None:
    uid = member.uid
    member.delete()
    assert services.interaction_mirror_store(uid=uid, items=[item(1)], total=1) is False
    assert not InteractionMirror.objects.exists()
