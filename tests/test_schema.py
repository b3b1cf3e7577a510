"""The OpenAPI schema generates without warnings, and the docs need no CDN."""
import pytest
from django.core.management import call_command


def test_schema_generates_and_validates_without_warnings(tmp_path) -> None:
    out = tmp_path / "schema.yml"
    # --fail-on-warn turns every drf-spectacular warning (unresolvable view, name clash…) into a failure.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    for path in ("/api/login/", "/api/me/", "/api/preferences/", "/api/internal/validate-token/"):
        assert path in text


@pytest.mark.django_db
def test_schema_endpoint_is_public(api_client) -> None:
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert "tokenAuth" in response.content.decode()


@pytest.mark.django_db
def test_swagger_ui_is_served_from_the_sidecar(api_client) -> None:
    response = api_client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn." not in html and "unpkg" not in html and "jsdelivr" not in html
    assert "drf_spectacular_sidecar/swagger-ui-dist" in html
