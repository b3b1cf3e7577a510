import pytest
from django.test import override_settings

from identity import throttles

pytestmark = pytest.mark.django_db

RATES = {
    "login": "100/min",
    "login_email_address": "100/min",
    "login_email": "3/min",
    "signup": "4/hour",
    "signup_email": "100/hour",
    "email_action": "100/hour",
    "email_action_email_address": "100/hour",
    "email_action_email": "2/hour",
    "reconfirm": "2/min",
}


def login(client, email, password="wrong-password-1", ip="10.0.0.1"):  # noqa: S107
    return client.post("/api/login/", {"email": email, "password": password}, format="json", REMOTE_ADDR=ip)


@override_settings(THROTTLE_RATES=RATES)
def test_the_n_plus_first_login_for_an_email_is_429_from_anywhere(throttle_store, api_client, verified_user, password):
    for ip in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert login(api_client, verified_user.email, ip=ip).status_code == 401
    refused = login(api_client, verified_user.email, password=password, ip="10.0.0.4")  # even right
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled"
    assert refused["Retry-After"] == "60"  # the fixture's clock stands at a window's start
    # Another email is not affected by this email's count.
    assert login(api_client, "other@example.com").status_code == 401


@override_settings(THROTTLE_RATES={**RATES, "login_email_address": "2/min", "login_email": "3/min"})
def test_one_address_is_stopped_before_the_accounts_limit(throttle_store, api_client, verified_user, password):
    for _ in range(2):
        assert login(api_client, verified_user.email).status_code == 401
    for _ in range(5):
        assert login(api_client, verified_user.email).status_code == 429  # not counted per account
    assert login(api_client, verified_user.email, password=password, ip="10.0.0.2").status_code == 200


@override_settings(THROTTLE_RATES={**RATES, "login": "2/min", "login_email": "100/min"})
def test_logins_are_throttled_per_client_address(throttle_store, api_client, db) -> None:
    assert login(api_client, "a@example.com").status_code == 401
    assert login(api_client, "b@example.com").status_code == 401
    assert login(api_client, "c@example.com").status_code == 429
    assert login(api_client, "c@example.com", ip="10.9.9.9").status_code == 401


@override_settings(THROTTLE_RATES=RATES)
def test_email_counts_ignore_case_and_spaces(throttle_store, api_client, db) -> None:
    for email in ("x@example.com", "X@EXAMPLE.com", " x@example.com "):
        login(api_client, email)
    assert login(api_client, "x@example.com").status_code == 429


@override_settings(THROTTLE_RATES=RATES)
def test_signup_is_throttled_per_client_address(throttle_store, api_client, db) -> None:
    statuses = [
        api_client.post(
            "/api/signup/", {"username": "u", "email": f"u{i}@example.com", "password": "a-long-passphrase-42"},
            format="json",
        ).status_code
        for i in range(5)
    ]
    assert statuses == [201, 201, 201, 201, 429]


@override_settings(THROTTLE_RATES=RATES)
def test_resend_and_reset_share_the_per_email_limit(throttle_store, api_client, db) -> None:
    body = {"email": "someone@example.com"}
    assert api_client.post("/api/verify/resend/", body, format="json").status_code == 202
    assert api_client.post("/api/password/reset/", body, format="json").status_code == 202
    assert api_client.post("/api/password/reset/", body, format="json").status_code == 429
    assert api_client.post("/api/verify/resend/", body, format="json").status_code == 429


@override_settings(THROTTLE_RATES={key: "1/min" for key in RATES}, THROTTLING_ENABLED=False)
def test_throttling_can_be_switched_off(throttle_store, api_client, db) -> None:
    for _ in range(5):
        assert login(api_client, "x@example.com").status_code == 401


def test_throttle_rates_off_in_the_environment_disables_them(monkeypatch) -> None:
    import importlib

    import project.settings as project_settings

    monkeypatch.setenv("THROTTLE_RATES", "off")
    monkeypatch.setenv("DJANGO_DEBUG", "1")
    try:
        reloaded = importlib.reload(project_settings)
        assert reloaded.THROTTLING_ENABLED is False
        monkeypatch.setenv("THROTTLE_RATES", "login=1/min, signup_email=2/day")
        reloaded = importlib.reload(project_settings)
        assert reloaded.THROTTLING_ENABLED is True
        assert reloaded.THROTTLE_RATES["login"] == "1/min"
        assert reloaded.THROTTLE_RATES["signup_email"] == "2/day"
        assert reloaded.THROTTLE_RATES["login_email"] == reloaded.DEFAULT_THROTTLE_RATES["login_email"]
    finally:
        monkeypatch.delenv("THROTTLE_RATES")
        importlib.reload(project_settings)


def test_every_scope_has_a_default_rate(settings) -> None:
    classes = throttles.LOGIN_THROTTLES + throttles.SIGNUP_THROTTLES + throttles.EMAIL_ACTION_THROTTLES
    assert {cls.scope for cls in classes + throttles.RECONFIRM_THROTTLES} <= set(throttles.ALL_SCOPES)
    from agent_bridge.throttles import REFRESH_SCOPE

    assert set(throttles.ALL_SCOPES) | {REFRESH_SCOPE} == settings.DEFAULT_THROTTLE_RATES.keys()


@pytest.mark.parametrize("scope", ["login", "email_action"])
def test_one_address_can_never_spend_an_emails_whole_budget(settings, scope) -> None:
    """The lockout policy (docs/api.md): per (email, address) over the same window as per email,
    and below it, so an attacker at one address cannot refuse the owner."""
    from throttling.rates import rate_parse

    pair = rate_parse(settings.DEFAULT_THROTTLE_RATES[f"{scope}_email_address"])
    email = rate_parse(settings.DEFAULT_THROTTLE_RATES[f"{scope}_email"])
    assert pair.seconds == email.seconds
    assert pair.limit * 3 <= email.limit  # at least three addresses to refuse the owner


@override_settings(THROTTLE_RATES=RATES)
def test_reconfirmation_is_counted_per_user_for_writes_only(throttle_store, auth_client, api_client, password) -> None:
    for _ in range(5):
        assert auth_client.get("/api/me/").status_code == 200
    assert api_client.delete("/api/account/", {"password": "x"}, format="json").status_code == 401  # uncounted
    for _ in range(2):
        body = {"current_password": "wrong-1", "new_password": "another-long-passphrase-7"}
        assert auth_client.post("/api/password/change/", body, format="json").status_code == 400
    assert auth_client.delete("/api/account/", {"password": password}, format="json").status_code == 429


@override_settings(THROTTLE_RATES=RATES)
def test_a_malformed_body_is_400_not_500(throttle_store, api_client, db) -> None:
    response = api_client.post("/api/login/", data=b"[1, 2]", content_type="application/json")
    assert response.status_code == 400
