"""Request bodies built from the app's own OpenAPI schema, so hand-written cases follow new fields."""
import json
from functools import cache
from typing import Any

from django.test import Client


@cache
def openapi() -> dict:
    response = Client(HTTP_HOST="localhost").get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    return json.loads(response.content)


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = openapi()["components"]["schemas"][name]
    return node


def _path_item(path: str) -> dict:
    """The schema's entry for a concrete path (converters become {param} in OpenAPI)."""
    paths = openapi()["paths"]
    if path in paths:
        return paths[path]
    for template, item in paths.items():
        parts, want = template.strip("/").split("/"), path.strip("/").split("/")
        if len(parts) == len(want) and all(p == w or p.startswith("{") for p, w in zip(parts, want, strict=True)):
            return item
    return {}


def request_schema(path: str, method: str) -> dict | None:
    """The JSON request-body schema of an operation, or None when it documents no body."""
    operation = _path_item(path).get(method.lower()) or {}
    content = (operation.get("requestBody") or {}).get("content") or {}
    media = content.get("application/json")
    return _resolve(media["schema"]) if media and "schema" in media else None


def fill(node: dict, text: str) -> Any:
    """A value of the node's shape in which every string is `text` (objects get every property)."""
    node = _resolve(node)
    kind = node.get("type")
    if "enum" in node:
        return node["enum"][0]
    if kind == "object" or "properties" in node:
        value = {name: fill(sub, text) for name, sub in (node.get("properties") or {}).items()}
        extra = node.get("additionalProperties")
        if not value and extra:
            value = {text: fill(extra, text) if isinstance(extra, dict) else text}
        return value
    if kind == "array":
        return [fill(node.get("items") or {}, text)]
    if kind in ("integer", "number"):
        return 1
    if kind == "boolean":
        return True
    return text
