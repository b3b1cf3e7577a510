import pytest

from identity import services

pytestmark = pytest.mark.django_db


def test_me_returns_the_profile(auth_client, verified_user) -> None:
    response = auth_client.get("/api/me/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"uid", "username", "email", "is_verified", "date_joined"}
    assert body["uid"] == str(verified_user.uid)
    assert body["email"] == verified_user.email
    assert body["is_verified"] is True


def test_patch_changes_the_username(auth_client, verified_user) -> None:
    response = auth_client.patch("/api/me/", {"username": "  Ada L.  "}, format="json")
    assert response.status_code == 200
    assert response.json()["username"] == "Ada L."
    verified_user.refresh_from_db()
    assert verified_user.username == "Ada L."
    assert verified_user.email == "ada@example.com"


@pytest.mark.parametrize("field", ["email", "uid", "is_verified"])
def test_patch_of_a_read_only_field_says_so_on_that_field(auth_client, verified_user, field) -> None:
    response = auth_client.patch("/api/me/", {"username": "new", field: "x@example.com"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert [p["code"] for p in body["errors"][field]] == ["read_only"]
    assert "username" not in body["errors"]  # not the old "username: This field is required."
    verified_user.refresh_from_db()
    assert (verified_user.username, verified_user.email) == ("ada", "ada@example.com")


@pytest.mark.parametrize("body", [{}, {"username": ""}, {"username": "x" * 151}, {"username": ["a"]}])
def test_patch_with_a_bad_username_is_400(auth_client, verified_user, body) -> None:
    response = auth_client.patch("/api/me/", body, format="json")
    assert response.status_code == 400
    assert "username" in response.json()["errors"]
    verified_user.refresh_from_db()
    assert verified_user.username == "ada"


def test_logout_all_revokes_every_token(auth_client, verified_user) -> None:
    other = services.auth_token_issue(user=verified_user)
    assert auth_client.post("/api/logout/all/").status_code == 200
    assert auth_client.get("/api/me/").status_code == 401
    auth_client.credentials(HTTP_X_AUTH_TOKEN=other.raw)
    assert auth_client.get("/api/me/").status_code == 401
