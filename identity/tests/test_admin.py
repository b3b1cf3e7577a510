import pytest

from identity import services

pytestmark = pytest.mark.django_db


def test_user_page_never_shows_the_password_hash(admin_client, verified_user) -> None:
    response = admin_client.get(f"/admin/identity/user/{verified_user.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert verified_user.email in html
    assert verified_user.password not in html
    assert "md5$" not in html and "argon2" not in html


def test_token_page_never_shows_the_hash(admin_client, issued_token) -> None:
    response = admin_client.get(f"/admin/identity/authtoken/{issued_token.token.pk}/change/")
    assert response.status_code == 200
    assert issued_token.token.key_hash not in response.content.decode()


@pytest.mark.parametrize("term", ["ada@example", "ADA@EXAMPLE.COM"])
def test_search_by_email(admin_client, verified_user, user, term) -> None:
    html = admin_client.get("/admin/identity/user/", {"q": term}).content.decode()
    assert verified_user.email in html
    assert user.email not in html


def test_search_by_uid(admin_client, verified_user, user) -> None:
    for term in (str(verified_user.uid), str(verified_user.uid)[:8], "not-a-uuid"):
        response = admin_client.get("/admin/identity/user/", {"q": term})
        assert response.status_code == 200
    html = admin_client.get("/admin/identity/user/", {"q": str(verified_user.uid)}).content.decode()
    assert verified_user.email in html and user.email not in html


def test_deleting_in_the_admin_raises_the_erasure_event(admin_client, verified_user, outbox) -> None:
    uid = verified_user.uid
    response = admin_client.post(f"/admin/identity/user/{verified_user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert [e.uid for e in outbox("user.deleted")] == [uid]


def test_bulk_delete_in_the_admin_raises_one_event_per_user(admin_client, verified_user, user, outbox) -> None:
    response = admin_client.post(
        "/admin/identity/user/",
        {"action": "delete_selected", "_selected_action": [verified_user.pk, user.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert {e.uid for e in outbox("user.deleted")} == {verified_user.uid, user.uid}


def test_erase_service_is_what_the_admin_uses(verified_user, outbox) -> None:
    services.user_erase(user=verified_user)
    assert len(outbox("user.deleted")) == 1
