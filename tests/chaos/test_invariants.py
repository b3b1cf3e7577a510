"""The chaos run's oracle on its own: the merge it expects and the findings it reports (no servers)."""

from tests.chaos.invariants import DatabaseView, check
from tests.chaos.model import UserRecord, merge_preferences, patch_preferences

UID = "7d5e8f8e-54ad-4d7e-9a57-1f2f0b7f6a11"
ALLERGIES = {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "severe"}}


def test_merge_is_the_agents_deep_merge() -> None:
    from identity.preferences import preferences_deep_merge as deep_merge

    base = {"vibes": ["cozy"], "cuisine_affinity": {"thai": 0.5}, "location_bias": "old town"}
    delta = {"vibes": ["lively", "cozy", "lively"], "cuisine_affinity": {"indian": 1}, "location_bias": ["a", "b"]}

    merged = merge_preferences(base, delta)

    assert merged == {
        "vibes": ["cozy", "lively"],
        "cuisine_affinity": {"thai": 0.5, "indian": 1},
        "location_bias": ["a", "b"],
    }
    assert merged == deep_merge(base, delta)
    assert merge_preferences(merged, delta) == merged  # a redelivered delta changes nothing


def test_expected_preferences_follow_the_api_patch() -> None:
    base = {"vibes": ["cozy", "lively"], "dietary": ["vegan"], "location_bias": {"city": "Oslo"}}
    delta = {"vibes": ["lively"], "location_bias": None}

    assert patch_preferences(base, delta) == {"vibes": ["lively"], "dietary": ["vegan"]}
    user = _user(preference_deltas=[base, delta])
    assert user.expected_preferences == {"vibes": ["lively"], "dietary": ["vegan"]}


def _user(**kwargs) -> UserRecord:
    user = UserRecord(email="a@chaos.example.com", username="a", password="x", uid=UID, token="t", signed_up=True)
    for key, value in kwargs.items():
        setattr(user, key, value)
    return user


def _db(*, present: bool = True, allergies=ALLERGIES, preferences=None) -> DatabaseView:
    email = "a@chaos.example.com"
    return DatabaseView(
        users={email: {"uid": UID, "is_verified": True, "count": 1}} if present else {},
        allergies={email: {"state": allergies, "revision": 2}},
        preferences={email: {"data": preferences or {}, "revision": 1}},
        outbox={},
        dead_letters={},
    )


def _agent(allergies=ALLERGIES, preferences=None) -> dict:
    return {UID: {"allergies": allergies, "preferences": preferences or {}}}


def test_a_user_in_step_everywhere_passes() -> None:
    user = _user(allergy_history=[ALLERGIES], allergy_writes=1, preference_deltas=[{"vibes": ["cozy"]}])
    db = _db(preferences={"vibes": ["cozy"]})

    assert check([user], db, _agent(preferences={"vibes": ["cozy"]})).ok


def test_an_older_allergy_state_at_the_agent_is_stale() -> None:
    older = {"confirmed": ["milk"], "intolerances": [], "severity": {"milk": "moderate"}}
    user = _user(allergy_history=[older, ALLERGIES], allergy_writes=2)

    findings = check([user], _db(), _agent(allergies=older))

    assert len(findings.stale) == 1 and not findings.lost


def test_a_missing_user_and_a_missing_delta_are_lost() -> None:
    user = _user(preference_deltas=[{"vibes": ["cozy"]}], allergy_history=[ALLERGIES], allergy_writes=1)
    db = _db(preferences={"vibes": ["cozy"]})

    assert len(check([user], db, {}).lost) == 1
    findings = check([user], db, _agent(preferences={}))
    assert len(findings.lost) == 1 and "vibes" in findings.lost[0]


def test_a_scalar_overwritten_by_a_replayed_older_delta_is_stale() -> None:
    user = _user(preference_deltas=[{"location_bias": "harbour"}, {"location_bias": "downtown"}])
    db = _db(allergies=None, preferences={"location_bias": "downtown"})

    findings = check([user], db, _agent(allergies={}, preferences={"location_bias": "harbour"}))

    assert len(findings.stale) == 1


def test_a_deleted_user_still_at_the_agent_or_in_the_database_is_reported() -> None:
    user = _user(deleted=True)

    findings = check([user], _db(), _agent())

    assert len(findings.lost) == 1 and len(findings.db_missing) == 1


def test_an_acknowledged_change_missing_from_the_database_is_reported() -> None:
    user = _user(allergy_history=[ALLERGIES], allergy_writes=3)

    assert check([user], _db(), _agent()).db_missing  # revision 2 < 3 acknowledged writes
    assert check([user], _db(present=False), _agent()).db_missing


def test_an_unknown_user_at_the_agent_is_reported() -> None:
    agent = {**_agent(), "0b7c1a8e-3e7e-4a43-a2cb-5b8f2f6c9d10": {"allergies": {}, "preferences": {}}}

    findings = check([_user(allergy_history=[ALLERGIES], allergy_writes=1)], _db(), agent)

    assert findings.other and not findings.ok


def test_a_key_whose_shape_changed_is_named_in_the_finding() -> None:
    # What the first CI-mode run found: the consumer merges the *current* full preferences at the
    # Agent; when the list state in the middle was never sent (coalesced behind a backlog), the old
    # object's keys survive at the Agent.
    deltas = [{"cuisine_affinity": {"thai": 0.5}}, {"cuisine_affinity": ["thai"]}, {"cuisine_affinity": {"french": 1}}]
    user = _user(preference_deltas=deltas)
    final = user.expected_preferences
    held = merge_preferences(merge_preferences({}, deltas[0]), final)  # the middle state coalesced away
    db = _db(allergies=None, preferences=final)

    findings = check([user], db, _agent(allergies={}, preferences=held))

    assert held == {"cuisine_affinity": {"thai": 0.5, "french": 1}} != final
    assert len(findings.stale) == 1 and "['cuisine_affinity'] changed shape" in findings.stale[0]


def test_a_5xx_is_reported_with_the_exception_the_api_logged(tmp_path) -> None:
    from tests.chaos.runner import first_logged_error

    assert first_logged_error(tmp_path) is None
    (tmp_path / "api.log").write_text(
        '{"level": "INFO", "message": "request"}\n'
        '{"level": "ERROR", "message": "Internal Server Error: /api/account/", '
        '"exc_info": "Traceback ...\\nIntegrityError: still referenced"}\n'
    )
    logged = first_logged_error(tmp_path)
    assert logged is not None
    assert "IntegrityError: still referenced" in logged
    assert "Internal Server Error: /api/account/" in logged
