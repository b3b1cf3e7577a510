"""Issue 11, findings 10 and 16: only valid, visible text is accepted and matched.

10: a lone surrogate ("\\ud800", legal in JSON, not Unicode text) in preferences or an allergy
name was stored; the answer then failed to render and every later GET was a 500, for good. The
JSON parser now refuses any string that is not text, for every endpoint, keys included (NUL,
which PostgreSQL cannot store, each field refuses). 16: invisible format characters survived in allergen names
(`pea\\u200bnuts` was stored and sent to the Agent as a new allergen); every name matched
against a vocabulary now loses them first.
"""
import json

import pytest
from django.apps import apps
from django.test import Client

from agent_bridge.models import OutboxEvent
from project.text import text_problem
from tests.security.accounts import Account
from tests.security.routes import write_routes

pytestmark = [pytest.mark.security, pytest.mark.django_db]

# Raw JSON text: json.dumps would escape the same way, but spelling it out shows the attack.
BAD_STRINGS = {
    "lone high surrogate": '"\\ud800"',
    "lone low surrogate": '"\\udfff"',
    "reversed pair": '"\\udc00\\ud800"',
    "NUL": '"pea\\u0000nuts"',
}
PLACES = {
    "allergy name": '{{"confirmed": [{s}], "intolerances": [], "severity": {{{s}: "severe"}}}}',
    "severity key": '{{"confirmed": ["peanuts"], "intolerances": [], "severity": {{"peanuts": "severe", {s}: "x"}}}}',
    "preference value": '{{"preferences": {{"vibes": [{s}]}}}}',
    "preference key": '{{"preferences": {{"cuisine_affinity": {{{s}: 1}}}}}}',
    "unknown key": '{{{s}: 1}}',
    "deep": '{{"preferences": {{"location_bias": {{"city": [[[[{s}]]]]}}}}}}',
}


def send(client: Client, method: str, path: str, raw: str, account: Account | None = None):
    headers = account.headers if account else {}
    return client.generic(
        method, path, data=raw.encode(), content_type="application/json",
        **{f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()},
    )


@pytest.mark.parametrize(("where", "template"), PLACES.items(), ids=list(PLACES))
@pytest.mark.parametrize(("what", "bad"), BAD_STRINGS.items(), ids=list(BAD_STRINGS))
def test_non_text_is_refused_and_nothing_is_stored(account, where, template, what, bad) -> None:
    client = Client()
    raw = template.format(s=bad)
    path, method = ("/api/preferences/", "PATCH") if "preference" in where or where == "deep" else (
        "/api/allergies/", "PUT"
    )
    events_before = OutboxEvent.objects.count()
    response = send(client, method, path, raw, account)
    assert response.status_code == 400, (where, what, response.status_code, response.content[:200])
    assert {"detail", "code"} <= set(response.json())
    assert OutboxEvent.objects.count() == events_before
    for read in ("/api/allergies/", "/api/preferences/", "/api/me/"):
        later = client.get(read, **{"HTTP_AUTHORIZATION": f"Token {account.token}"})
        assert later.status_code == 200, (read, later.content[:200])


def stored_non_text() -> list[str]:
    """Every stored string (any table, JSON documents included) that is not valid text."""
    found = []
    for model in apps.get_models():
        for row in model.objects.all().values_list():
            if text_problem(list(row)) or text_problem(json.loads(json.dumps(list(row), default=str))):
                found.append(model._meta.label)
    return found


@pytest.mark.parametrize(("route", "method"), write_routes(), ids=lambda v: str(v))
def test_no_write_endpoint_stores_a_lone_surrogate_or_fails(account, settings, route, method) -> None:
    """Every route and method that can change state, found by walking the URL resolver: a body
    full of lone surrogates is a JSON 400 wherever the view reads it (logout or DELETE never
    look at it), and is never stored."""
    settings.THROTTLING_ENABLED = False
    client = Client()
    raw = '{"email": "\\ud800@example.com", "password": "\\ud800", "token": "\\ud800", "username": "\\ud800", ' \
          '"new_password": "\\ud800", "current_password": "\\ud800", "preferences": {"vibes": ["\\ud800"]}}'
    headers = {"HTTP_X_SERVICE_TOKEN": settings.AGENT_SERVICE_TOKEN, "HTTP_AUTHORIZATION": f"Token {account.token}"}
    response = client.generic(method, route.path, data=raw.encode(), content_type="application/json", **headers)
    what = (route.key, method, response.status_code, response.content[:200])
    assert response.status_code < 500, what
    if response.status_code >= 400:
        assert json.loads(response.content)["code"], what
    assert stored_non_text() == [], what


@pytest.mark.parametrize(
    "spelling",
    [
        "pea\u200bnuts",  # zero-width space
        "pea\u00adnuts",  # soft hyphen
        "\ufeffpeanuts",  # byte-order mark
        "peanuts\u2060",  # word joiner
        "pea\u200dnuts",  # zero-width joiner
        "pea\u202enuts",  # right-to-left override
        "peanuts\ufe0f",  # variation selector
        "pea\U000e0020nuts",  # tag space
        "p\u034feanuts",  # combining grapheme joiner
    ],
    ids=["zwsp", "soft-hyphen", "bom", "word-joiner", "zwj", "rlo", "vs16", "tag", "cgj"],
)
def test_invisible_characters_do_not_make_a_new_allergen(account, spelling) -> None:
    client = Client()
    body = {"confirmed": [spelling, "cash\u200bew"], "intolerances": ["lac\u00adtose"],
            "severity": {spelling: "anaphylactic", "cash\u200bew": "severe", "lac\u00adtose": "intolerance"}}
    response = client.put("/api/allergies/", body, content_type="application/json", **{
        "HTTP_AUTHORIZATION": f"Token {account.token}"})
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["confirmed"] == ["peanuts", "cashews"] and answer["intolerances"] == ["lactose"]
    # What the Agent will be sent (the handler sends the stored state): the canonical names only.
    from allergies.models import AllergyProfile, allergy_flags_for

    assert OutboxEvent.objects.filter(type="allergies.replaced").count() == 1
    profile = AllergyProfile.objects.get(user__uid=account.uid)
    assert allergy_flags_for(profile.confirmed, profile.intolerances) == ["cashews", "lactose", "peanuts"]


def test_a_name_of_only_invisible_characters_is_empty(account) -> None:
    body = {"confirmed": ["\u200b\u200d"], "intolerances": [], "severity": {"\u200b\u200d": "severe"}}
    response = Client().put("/api/allergies/", body, content_type="application/json",
                            HTTP_AUTHORIZATION=f"Token {account.token}")
    assert response.status_code == 400, response.content


def test_preference_values_lose_invisible_characters(account) -> None:
    body = {"preferences": {"dietary": ["ve\u200bgan", "vegan", "halal\u00ad"],
                            "cuisine_affinity": {"ital\u2060ian": 0.8}}}
    response = Client().patch("/api/preferences/", body, content_type="application/json",
                              HTTP_AUTHORIZATION=f"Token {account.token}")
    assert response.status_code == 200, response.content
    assert response.json()["preferences"] == {"dietary": ["vegan", "halal"], "cuisine_affinity": {"italian": 0.8}}
