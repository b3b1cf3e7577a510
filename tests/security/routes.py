"""Every route of the project, found by walking the URL resolver, so that no suite works from a
hand-kept list that a new endpoint could be missing from."""
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

# Sample values for path converters: well-formed but naming nothing.
_SAMPLES = {"int": "7", "uuid": str(uuid.UUID(int=7)), "slug": "sample", "str": "sample", "path": "sample"}
_CONVERTER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Route:
    pattern: str  # "/api/verify/<str:token>/"
    name: str | None
    view: object  # the view class (or function)
    methods: tuple[str, ...]  # what the view implements, OPTIONS and HEAD included

    @property
    def key(self) -> str:
        """The pattern with converters blanked, "/api/verify/{}/": what the suites classify."""
        return _CONVERTER.sub("{}", self.pattern)

    @property
    def path(self) -> str:
        """A concrete path that resolves to this route."""
        return _CONVERTER.sub(lambda m: _SAMPLES.get(m["converter"] or "str", "sample"), self.pattern)

    @property
    def write_methods(self) -> tuple[str, ...]:
        return tuple(method for method in self.methods if method in WRITE_METHODS)

    def __str__(self) -> str:
        return self.key


def _methods(view: object) -> tuple[str, ...]:
    cls = getattr(view, "cls", None) or getattr(view, "view_class", None)
    if cls is None:  # a function view: it may answer anything
        return ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    methods = [m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m)]
    if "GET" in methods:
        methods.append("HEAD")  # Django's View serves HEAD with get()
    if hasattr(cls, "options"):
        methods.append("OPTIONS")
    return tuple(methods)


def _walk(patterns: list, prefix: str) -> Iterator[Route]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            view = entry.callback
            yield Route(
                pattern="/" + prefix + str(entry.pattern),
                name=entry.name,
                view=getattr(view, "cls", None) or getattr(view, "view_class", None) or view,
                methods=_methods(view),
            )


def all_routes() -> list[Route]:
    """Every route but the last, catch-all pattern (project.errors.unrouted: JSON 404/308)."""
    from project.errors import unrouted

    return [route for route in _walk(get_resolver().url_patterns, "") if route.view is not unrouted]


def api_routes() -> list[Route]:
    """Every route but the admin site's (it has its own login, tested separately)."""
    return [route for route in all_routes() if not route.pattern.startswith("/admin/")]


def write_routes() -> list[tuple[Route, str]]:
    """(route, method) for every route and method that can change state."""
    return [(route, method) for route in api_routes() for method in route.write_methods]
