"""project.negotiation: DRF's content negotiation, the common case answered without parsing."""
from unittest import mock

import pytest
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, StaticHTMLRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from project.negotiation import ContentNegotiation

ACCEPTS = [None, "*/*", "application/json", "application/json; indent=4", "text/html", "text/*", "", "*/*;q=0.1",
           "application/json, */*", "image/png", "application/*"]
QUERIES = ["", "format=json", "format=api", "x=1"]
RENDERERS = [[JSONRenderer()], [JSONRenderer(), BrowsableAPIRenderer()], [StaticHTMLRenderer(), JSONRenderer()]]


def _request(accept: str | None, query: str) -> Request:
    extra = {} if accept is None else {"HTTP_ACCEPT": accept}
    return Request(APIRequestFactory().get(f"/api/allergies/{'?' + query if query else ''}", **extra))


def _outcome(negotiation, request: Request, renderers: list, suffix: str | None):
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except Exception as exc:  # the refusal is part of the answer (406, 404 for an unknown format)
        return type(exc)
    return type(renderer), media_type


@pytest.mark.parametrize("renderers", RENDERERS, ids=["json", "json+api", "html+json"])
def test_answers_as_drf_does(renderers) -> None:
    for accept in ACCEPTS:
        for query in QUERIES:
            for suffix in (None, "json"):
                ours = _outcome(ContentNegotiation(), _request(accept, query), renderers, suffix)
                drf = _outcome(DefaultContentNegotiation(), _request(accept, query), renderers, suffix)
                assert ours == drf, (accept, query, suffix)


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_the_common_case_is_not_parsed(accept) -> None:
    with mock.patch.object(DefaultContentNegotiation, "select_renderer") as drf:
        renderer, media_type = ContentNegotiation().select_renderer(_request(accept, ""), [JSONRenderer()])
    assert drf.call_count == 0 and isinstance(renderer, JSONRenderer) and media_type == "application/json"


def test_the_api_uses_it() -> None:
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_CONTENT_NEGOTIATION_CLASS is ContentNegotiation
