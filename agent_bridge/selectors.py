"""Reads of agent_bridge's interaction-history mirror."""
from typing import Any

from agent_bridge.models import InteractionMirror
from identity.models import User


def interaction_page_get(*, user: User, limit: int, offset: int) -> dict[str, Any]:
    """One page of the mirrored history, newest first: {interactions, total, limit, offset, synced_at}.

    `total` counts the mirrored items (what pagination can reach).
    """
    mirror = InteractionMirror.objects.filter(user=user).first()
    items = list(mirror.items) if mirror else []
    return {
        "interactions": items[offset : offset + limit],
        "total": len(items),
        "limit": limit,
        "offset": offset,
        "synced_at": mirror.synced_at if mirror else None,
    }


def interaction_mirror_export(*, user: User) -> dict[str, Any]:
    """The whole mirror of the user's history, for the data export."""
    mirror = InteractionMirror.objects.filter(user=user).first()
    if mirror is None:
        return {"items": [], "agent_total": 0, "synced_at": None}
    return {"items": list(mirror.items), "agent_total": mirror.agent_total, "synced_at": mirror.synced_at}
