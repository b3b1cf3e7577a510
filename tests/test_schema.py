"""The OpenAPI schema generates without warnings, and the docs need no CDN."""
import json

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


# --- The schema is the frontend's contract -------------------------------------------------
def _schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _operations(schema: dict) -> list[tuple[str, str, dict]]:
    return [(path, method.upper(), op) for path, ops in schema["paths"].items() for method, op in ops.items()]


SCHEMA = _schema()
WRITES = [(path, method) for path, method, _ in _operations(SCHEMA) if method in ("POST", "PUT", "PATCH", "DELETE")]
FREE_FORM_OK = {"agent_response"}  # the Agent's own answer: its shape is the Agent's


def _untyped(node, where: str, found: list[str]) -> None:
    """Collect schemas that say nothing of their content: `{}` or an object with no properties."""
    if not isinstance(node, dict):
        return
    if not ({"type", "$ref", "oneOf", "anyOf", "allOf", "enum"} & set(node)):
        found.append(f"{where}: no type")
    if node.get("type") == "object" and not node.get("properties"):
        extra = node.get("additionalProperties")
        if extra in (None, {}) or (extra is True and where.rsplit(".", 1)[-1] not in FREE_FORM_OK):
            found.append(f"{where}: untyped object")
    for key, value in node.get("properties", {}).items():
        _untyped(value, f"{where}.{key}", found)
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            _untyped(node[key], f"{where}[{key}]", found)
    for key in ("oneOf", "anyOf", "allOf"):
        for index, option in enumerate(node.get(key, [])):
            _untyped(option, f"{where}.{key}{index}", found)


def test_no_schema_is_untyped() -> None:
    found: list[str] = []
    for name, component in SCHEMA["components"]["schemas"].items():
        _untyped(component, name, found)
    for path, method, op in _operations(SCHEMA):
        bodies = [("request", op.get("requestBody", {})), *op["responses"].items()]
        for label, body in bodies:
            for media in body.get("content", {}).values():
                _untyped(media.get("schema", {}), f"{method} {path} {label}", found)
    assert not found, found


def test_every_operation_is_described_for_a_frontend_developer() -> None:
    for path, method, op in _operations(SCHEMA):
        assert op.get("summary"), f"{method} {path}: no summary"
        assert len(op.get("description", "")) > 20, f"{method} {path}: no description"
        assert op.get("tags"), f"{method} {path}: no tag"
        if path.startswith(("/api/internal/", "/api/health")):
            assert op["tags"] == ["internal"], f"{method} {path}: internal endpoints are tagged apart"


def test_the_token_scheme_is_described() -> None:
    scheme = SCHEMA["components"]["securitySchemes"]["tokenAuth"]
    assert scheme["name"] == "Authorization" and "`Token`" in scheme["description"]


def test_enums_are_in_the_schema() -> None:
    schemas = SCHEMA["components"]["schemas"]
    severity = schemas["AllergyProfileInputRequest"]["properties"]["severity"]["additionalProperties"]
    assert severity["enum"] == ["anaphylactic", "severe", "moderate", "intolerance"]
    prefs = schemas["PreferencesDocument"]["properties"]
    assert set(prefs) == {"dietary", "vibes", "cuisine_affinity", "price_comfort", "location_bias"}
    assert prefs["price_comfort"]["items"]["$ref"].endswith("PriceTierEnum")


@pytest.fixture
def caller(api_client, issued_token, settings):
    api_client.credentials(
        HTTP_AUTHORIZATION=f"Token {issued_token.raw}", HTTP_X_SERVICE_TOKEN=settings.AGENT_SERVICE_TOKEN
    )
    return api_client


def _concrete(path: str) -> str:
    import re

    return re.sub(r"\{[^}]+\}", "sample", path)


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "method"), WRITES, ids=lambda v: v)
def test_every_operation_that_reads_a_body_has_one_in_the_schema(caller, clear_cache, path, method) -> None:
    """Found by behaviour, not by a list: an operation that refuses an empty body read it."""
    response = caller.generic(method, _concrete(path), data=b"{}", content_type="application/json")
    reads_a_body = response.status_code == 400 and response.json()["code"] == "validation_error"
    op = SCHEMA["paths"][path][method.lower()]
    if reads_a_body:
        assert "requestBody" in op, f"{method} {path} reads a body the schema does not declare"


EXAMPLES = [
    (path, method, name, example["value"])
    for path, method, op in _operations(SCHEMA)
    for media in op.get("requestBody", {}).get("content", {}).values()
    for name, example in media.get("examples", {}).items()
]


def test_there_are_request_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "method", "name", "value"), EXAMPLES, ids=lambda v: str(v)[:40])
def test_every_request_example_passes_validation(caller, clear_cache, path, method, name, value) -> None:
    response = caller.generic(method, _concrete(path), data=json.dumps(value), content_type="application/json")
    if response.status_code == 400:
        assert response.json()["code"] != "validation_error", (name, response.json())
