"""Partitioning (no broker needed): a user's events always share one partition queue."""
import uuid

from agent_bridge.transports.topology import Topology


def test_a_users_events_share_one_partition_and_users_spread_over_all() -> None:
    topology = Topology(prefix="kairos", partitions=4)
    uids = [str(uuid.uuid4()) for _ in range(200)]
    for uid in uids:
        keys = {topology.routing_key({"uid": uid, "type": kind}).split(".")[0]
                for kind in ("allergies.replaced", "preferences.updated", "user.deleted")}
        assert len(keys) == 1
    assert {topology.partition_of(uid) for uid in uids} == {0, 1, 2, 3}


def test_the_hash_is_stable_across_processes() -> None:
    # crc32, not Python's per-process salted hash(): every relay routes a uid the same way.
    assert Topology(prefix="kairos", partitions=4).partition_of("5f0c6b8e-2d41-4c3a-8f7e-9b1a2c3d4e5f") == 2
    assert Topology(prefix="kairos", partitions=4).work_queues == [f"kairos.work.{n}" for n in range(4)]
