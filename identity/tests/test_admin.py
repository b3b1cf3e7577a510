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


def test_adding_a_user_in_the_admin_goes_through_the_service(admin_client, outbox) -> None:
    from identity.models import User

    form = {"email": "New@Example.com", "username": "new", "password": "a-long-passphrase-42", "is_verified": "on"}
    before = len(outbox("user.registered"))  # the admin's own
    response = admin_client.post("/admin/identity/user/add/", form)

    assert response.status_code == 302, response.content[:500]
    user = User.objects.get(email="new@example.com")
    assert user.check_password("a-long-passphrase-42")
    assert [e.uid for e in outbox("user.registered")[before:]] == [user.uid]


def test_the_admin_add_form_refuses_a_weak_password(admin_client, outbox) -> None:
    before = len(outbox("user.registered"))
    response = admin_client.post("/admin/identity/user/add/", {"email": "w@example.com", "username": "w",
                                                                "password": "123"})
    assert response.status_code == 200  # the form again, with the error
    assert "This password is too short" in response.content.decode()
    assert len(outbox("user.registered")) == before


def test_createsuperuser_queues_the_user_for_the_agent(db, outbox, monkeypatch) -> None:
    from django.core.management import call_command

    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "root-passphrase-123")
    call_command("createsuperuser", interactive=False, email="root@example.com", username="root", verbosity=0)

    [event] = outbox("user.registered")
    from identity.models import User

    assert event.uid == User.objects.get(email="root@example.com").uid
