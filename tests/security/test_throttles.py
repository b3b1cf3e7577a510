"""Attacks on the throttles (issue 11, findings 1, 2, 8, 9 and 13), each reproduced over HTTP against
both counter stores: the embedded table and Redis (`throttle_store`; Redis needs REDIS_URL).

The rates are the shipped defaults (project/settings.py DEFAULT_THROTTLE_RATES): what is tested is
the policy documented in docs/api.md, "Throttles".
"""
import pytest
from django.test import Client
from rest_framework.test import APIClient

from identity.models import User
from throttling.models import Counter
from throttling.stores import DatabaseStore

pytestmark = [pytest.mark.security, pytest.mark.django_db]

WRONG = "not-the-password-123"
ATTACKER = "203.0.113.66"
OWNER = "198.51.100.7"


def login(client: APIClient, email: str, password: str = WRONG, *, ip: str = ATTACKER, **headers) -> int:
    body = {"email": email, "password": password}
    return client.post("/api/login/", body, format="json", REMOTE_ADDR=ip, **headers).status_code


def reset(client: APIClient, email: str, *, ip: str) -> int:
    return client.post("/api/password/reset/", {"email": email}, format="json", REMOTE_ADDR=ip).status_code


def resend(client: APIClient, email: str, *, ip: str) -> int:
    return client.post("/api/verify/resend/", {"email": email}, format="json", REMOTE_ADDR=ip).status_code


def flood_address(i: int) -> str:
    return f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"


# --- 1: counts cannot be evicted ---------------------------------------------------------------
def test_a_flood_of_distinct_emails_does_not_evict_the_target_count(throttle_store, api_client, db):
    """The database cache culled the lowest-sorting third of its 300 entries whenever it was full: 450
    fresh emails evicted the target's count and guessing went on. (This victim's old cache key sorts
    low, so the old store evicts it within this flood; a bigger flood evicts any victim's.)"""
    victim = User.objects.create_user("victim69@example.com", "a-long-passphrase-42", is_verified=True)
    assert [login(api_client, victim.email) for _ in range(5)] == [401] * 5
    assert login(api_client, victim.email) == 429
    for i in range(450):  # each from its own address, so no per-address limit stops the flood
        assert login(api_client, f"flood-{i}@example.com", ip=flood_address(i)) == 401
    assert login(api_client, victim.email) == 429


def test_a_request_refused_per_address_writes_no_per_email_counter(throttle_store, api_client, db):
    """DRF ran every throttle even after one refused, so refused requests still created keys: one
    address could fill the store with per-email counters."""
    for i in range(10):
        assert login(api_client, f"victim-{i}@example.com") == 401
    # 10 per address, 3 counters each: 30 windows. The next 50 are refused at the first limit.
    for i in range(50):
        assert login(api_client, f"other-{i}@example.com") == 429
    if isinstance(throttle_store, DatabaseStore):
        assert Counter.objects.count() == 1 + 2 * 10
    else:
        assert len(list(throttle_store.client.scan_iter(match=throttle_store.prefix + "*"))) == 1 + 2 * 10


def test_an_over_long_email_is_counted(throttle_store, api_client, db):
    """Keys are hashes: no client input can make a counter write fail (PostgreSQL's varchar(255)
    cache key silently dropped long ones)."""
    long_email = "a" * 5000 + "@example.com"
    statuses = [login(api_client, long_email, ip=flood_address(i)) for i in range(21)]
    assert statuses == [400] * 20 + [429]  # 400: the serializer refuses it, after it was counted


# --- 2: X-Forwarded-For is not the client --------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    ["HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED", "HTTP_CLIENT_IP", "HTTP_TRUE_CLIENT_IP"],
)
def test_rotating_a_client_address_header_does_not_bypass_the_per_address_limit(
    throttle_store, api_client, settings, db, header
):
    """With no trusted proxy (the default) X-Forwarded-For is ignored entirely, and the other
    headers that claim a client address are never read (not even behind a trusted proxy)."""
    settings.TRUSTED_PROXY_COUNT = 0 if header == "HTTP_X_FORWARDED_FOR" else 1
    value = "for=192.0.2.{}" if header == "HTTP_FORWARDED" else "192.0.2.{}"
    statuses = [login(api_client, f"user{i}@example.com", **{header: value.format(i)}) for i in range(12)]
    assert statuses == [401] * 10 + [429] * 2


def test_behind_one_trusted_proxy_only_the_address_it_appended_counts(throttle_store, api_client, settings, db):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "172.16.0.2"
    # The client sends its own XFF (rotating, and long); the proxy appends the real peer.
    statuses = [
        login(api_client, f"user{i}@example.com", ip=proxy, HTTP_X_FORWARDED_FOR=f"{'9' * 300}.{i}, {ATTACKER}")
        for i in range(11)
    ]
    assert statuses == [401] * 10 + [429]
    # Another client behind the same proxy has its own count.
    assert login(api_client, "user0@example.com", ip=proxy, HTTP_X_FORWARDED_FOR=OWNER) == 401


def test_an_over_long_or_garbage_forwarded_for_is_still_counted(throttle_store, api_client, settings, db):
    """On PostgreSQL an XFF over ~235 characters was never counted (the cache insert failed)."""
    settings.TRUSTED_PROXY_COUNT = 1
    statuses = [
        login(api_client, f"user{i}@example.com", HTTP_X_FORWARDED_FOR=f"{i}" + "x" * 400) for i in range(11)
    ]
    assert statuses == [401] * 10 + [429]  # not an address: counted against the peer


def test_ipv6_clients_cannot_rotate_within_their_64(throttle_store, api_client, db):
    statuses = [login(api_client, f"user{i}@example.com", ip=f"2001:db8:1:2::{i:x}") for i in range(11)]
    assert statuses == [401] * 10 + [429]
    assert login(api_client, "user0@example.com", ip="2001:db8:1:3::1") == 401


# --- 8: the admin login ------------------------------------------------------------------------
@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root@example.com", "root-passphrase-for-tests-42", username="root")


def admin_login(client: Client, username: str, password: str, *, ip: str = ATTACKER):
    return client.post("/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_admin_login_refuses_guessing_even_the_right_password(throttle_store, superuser):
    client = Client()
    assert [admin_login(client, superuser.email, WRONG).status_code for _ in range(5)] == [200] * 5
    refused = admin_login(client, superuser.email, "root-passphrase-for-tests-42")
    assert refused.status_code == 429
    assert refused.json()["code"] == "throttled" and int(refused["Retry-After"]) > 0
    assert "_auth_user_id" not in client.session
    # From elsewhere the owner gets in.
    assert admin_login(Client(), superuser.email, "root-passphrase-for-tests-42", ip=OWNER).status_code == 302


def test_admin_login_is_limited_per_username_across_addresses(throttle_store, superuser):
    spellings = [superuser.email, superuser.email.upper(), f" {superuser.email} "]
    statuses = [admin_login(Client(), spellings[i % 3], WRONG, ip=flood_address(i)).status_code for i in range(21)]
    assert statuses == [200] * 20 + [429]  # one count, however the address is spelt


def test_admin_login_and_api_login_share_one_budget_per_account(throttle_store, api_client, superuser):
    assert [login(api_client, superuser.email) for _ in range(5)] == [401] * 5
    assert admin_login(Client(), superuser.email, "root-passphrase-for-tests-42").status_code == 429


def test_admin_login_page_itself_is_not_counted(throttle_store, superuser):
    client = Client()
    for _ in range(30):
        assert client.get("/admin/login/", REMOTE_ADDR=ATTACKER).status_code == 200
    assert admin_login(client, superuser.email, "root-passphrase-for-tests-42").status_code == 302


# --- 9: knowing an email is not enough to lock its owner out --------------------------------------
def test_an_attacker_at_one_address_cannot_lock_the_owner_out(throttle_store, api_client, verified_user, password):
    """5 wrong logins used to make the owner's correct login 429."""
    statuses = [login(api_client, verified_user.email) for _ in range(30)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert login(api_client, verified_user.email, password, ip=OWNER) == 200


def test_an_attacker_at_one_address_never_locks_the_owner_out_however_long_it_keeps_going(
    throttle_store, throttle_clock, api_client, verified_user, password
):
    """Its per-(email, address) budget must be smaller than the per-email one over the same window,
    or it fills the per-email budget across several of its own windows."""
    for minute in range(12):  # 10 tries of each a minute, at the end of most windows too
        for _ in range(10):
            login(api_client, verified_user.email)
            reset(api_client, verified_user.email, ip=ATTACKER)
        if minute in (4, 9, 11):
            assert login(api_client, verified_user.email, password, ip=OWNER) == 200, f"minute {minute}"
        if minute in (9, 11):
            assert reset(api_client, verified_user.email, ip=OWNER) == 202, f"minute {minute}"
        throttle_clock.advance(60)


def test_a_distributed_lockout_ends_within_minutes(throttle_store, throttle_clock, api_client, verified_user, password):
    for i in range(20):  # 20 addresses, one guess each: the per-account limit
        assert login(api_client, verified_user.email, ip=flood_address(i)) == 401
    assert login(api_client, verified_user.email, password, ip=OWNER) == 429
    throttle_clock.advance(5 * 60)
    assert login(api_client, verified_user.email, password, ip=OWNER) == 200


def test_resets_from_one_address_do_not_block_the_owners_reset_or_resend(throttle_store, api_client, verified_user):
    """3 resets used to make the owner's reset and resend 429 for an hour."""
    statuses = [reset(api_client, verified_user.email, ip=ATTACKER) for _ in range(10)]
    assert statuses == [202] * 2 + [429] * 8
    assert reset(api_client, verified_user.email, ip=OWNER) == 202
    assert resend(api_client, verified_user.email, ip=OWNER) == 202


def test_a_distributed_reset_lockout_ends_within_ten_minutes(throttle_store, throttle_clock, api_client, verified_user):
    for i in range(6):
        assert reset(api_client, verified_user.email, ip=flood_address(i)) == 202
    assert reset(api_client, verified_user.email, ip=OWNER) == 429
    throttle_clock.advance(10 * 60)
    assert reset(api_client, verified_user.email, ip=OWNER) == 202


# --- 13: password re-confirmation ----------------------------------------------------------------
def test_a_stolen_token_is_not_a_fast_password_oracle(
    throttle_store, throttle_clock, auth_client, verified_user, password
):
    """DELETE /api/account/ and POST /api/password/change/ check the password: 50 guesses took 6.6 s."""
    guesses = [
        auth_client.delete("/api/account/", {"password": f"guess-{i}"}, format="json").status_code for i in range(3)
    ]
    guesses += [
        auth_client.post(
            "/api/password/change/",
            {"current_password": f"guess-{i}", "new_password": "another-long-passphrase-7"},
            format="json",
        ).status_code
        for i in range(2)
    ]
    assert guesses == [400] * 5
    refused = auth_client.delete("/api/account/", {"password": password}, format="json")
    assert refused.status_code == 429 and refused.json()["code"] == "throttled"
    assert User.objects.filter(pk=verified_user.pk).exists()
    # Per user: the owner gets their budget back within minutes, and nobody else is affected.
    throttle_clock.advance(10 * 60)
    assert auth_client.delete("/api/account/", {"password": password}, format="json").status_code == 204


def test_reads_never_touch_the_throttle_store(throttle_store, auth_client, monkeypatch):
    """The perf budget: an authenticated GET costs no counter write (only credential writes are counted)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a read hit the throttle store")

    monkeypatch.setattr(type(throttle_store), "incr", refuse)
    for path in ("/api/me/", "/api/allergies/", "/api/preferences/"):
        assert auth_client.get(path).status_code == 200, path


def test_a_store_outage_refuses_credentials_with_503_json(db, settings, api_client, verified_user, password):
    """Fail closed, never a 500 and never uncounted: a Redis that does not answer."""
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # discard port: nothing listens
    response = api_client.post("/api/login/", {"email": verified_user.email, "password": password}, format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "throttle_unavailable"
    assert admin_login(Client(), verified_user.email, password).status_code == 503


def test_the_admin_password_change_is_throttled_per_user(throttle_store, superuser):
    """A sibling of 13: the admin's password change re-confirms the old password too."""
    client = Client()
    client.force_login(superuser)
    body = {"new_password1": "another-long-passphrase-7", "new_password2": "another-long-passphrase-7"}
    statuses = [
        client.post("/admin/password_change/", {**body, "old_password": f"guess-{i}"}).status_code for i in range(6)
    ]
    assert statuses == [200] * 5 + [429]  # 200: the form again, with "incorrect password"
    assert Client().get("/admin/password_change/").status_code == 302  # still behind the admin login
