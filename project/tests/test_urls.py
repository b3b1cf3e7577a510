"""project/urls.py with project/errors.py: every answer is JSON, whatever the path or method, in
DEBUG (scripts/dev) as in production. The routes are walked from the resolver, so a new endpoint
is covered without being listed here."""
import pytest

from tests.security.routes import api_routes

pytestmark = pytest.mark.django_db

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# HTML by design: the Swagger UI page.
HTML_PAGES = {"/api/docs/"}
ROUTES = [route for route in api_routes() if route.pattern not in HTML_PAGES]


@pytest.fixture(params=[False, True], ids=["production", "debug"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:200])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body["detail"], str) and isinstance(body["code"], str)
    if code is not None:
        assert body["code"] == code
    return body


@pytest.fixture
def signed_in(client, issued_token, settings):
    """Both credentials, so that a wrong method is not answered 401 first."""
    client.defaults.update(
        HTTP_AUTHORIZATION=f"Token {issued_token.raw}", HTTP_X_SERVICE_TOKEN=settings.AGENT_SERVICE_TOKEN
    )
    return client


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_a_wrong_method_is_a_json_405(signed_in, debug, route) -> None:
    client = signed_in
    wrong = [method for method in ALL_METHODS if method not in route.methods]
    if not wrong:
        pytest.skip(f"{route} answers every method")
    for method in wrong:
        response = client.generic(method, route.path, data=b"{}", content_type="application/json")
        assert_json_error(response, 405, "method_not_allowed")


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_a_missing_trailing_slash_is_a_json_308_that_keeps_the_method(client, debug, route) -> None:
    if not route.path.endswith("/"):
        pytest.skip(f"{route} has no trailing slash by design (Prometheus scrapes /metrics)")
    bare = route.path.rstrip("/")
    for method in route.methods:
        if method in ("HEAD", "OPTIONS"):
            continue
        response = client.generic(method, bare + "?x=1", data=b'{"a": 1}', content_type="application/json")
        assert_json_error(response, 308, "trailing_slash_required")
        assert response["Location"] == route.path + "?x=1"


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_an_unknown_path_beside_each_route_is_a_json_404(client, debug, route) -> None:
    for path in (route.path + "nope/", route.path + "nope"):
        for method in ALL_METHODS:
            response = client.generic(method, path, data=b"{}", content_type="application/json")
            assert_json_error(response, 404, "not_found")


@pytest.mark.parametrize("path", ["/", "/nope", "/api", "/api/", "/static-nope/x.js", "/api/%ff/"])
def test_paths_outside_every_app_are_json_404(client, debug, path) -> None:
    assert_json_error(client.post(path, data=b"{}", content_type="application/json"), 404, "not_found")


def test_the_admin_without_its_slash_is_redirected(client) -> None:
    response = client.get("/admin")
    assert response.status_code == 308
    assert response["Location"] == "/admin/"


def test_the_allergy_routes_are_tried_first_and_overlap_no_other_route() -> None:
    """Django tries the patterns in order: the most requested routes come first (no failed matches before
    them), which is safe only because no later route would take their paths."""
    from django.urls import Resolver404, URLResolver

    from allergies import urls as allergy_urls
    from project import urls

    def resolves(pattern, path: str) -> bool:
        try:
            return pattern.resolve(path) is not None
        except Resolver404:
            return False

    first = urls.urlpatterns[0]
    assert isinstance(first, URLResolver) and first.urlconf_name is allergy_urls
    for path in ("api/allergies/", "api/allergies/history/", "api/allergens/"):
        assert resolves(first, path)
        for later in urls.urlpatterns[1:-1]:  # the last is the JSON catch-all
            assert not resolves(later, path), (path, later)
