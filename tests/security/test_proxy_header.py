"""X-Forwarded-Proto is believed only behind a trusted proxy: without one, a client sending
`X-Forwarded-Proto: https` over plain HTTP must not pass as a secure request (it would skip the
HTTPS redirect and be treated as HTTPS by everything that asks request.is_secure())."""
import importlib

import pytest
from django.test import RequestFactory

pytestmark = pytest.mark.security


def _reloaded(monkeypatch, proxies: str | None):
    import project.settings as project_settings

    monkeypatch.setenv("DJANGO_DEBUG", "1")
    if proxies is None:
        monkeypatch.delenv("TRUSTED_PROXY_COUNT", raising=False)
    else:
        monkeypatch.setenv("TRUSTED_PROXY_COUNT", proxies)
    return importlib.reload(project_settings)


@pytest.fixture
def reload_settings(monkeypatch):
    import project.settings as project_settings

    yield lambda proxies: _reloaded(monkeypatch, proxies)
    monkeypatch.undo()
    importlib.reload(project_settings)


def test_without_a_trusted_proxy_the_header_is_ignored(reload_settings, settings) -> None:
    reloaded = reload_settings(None)
    assert reloaded.SECURE_PROXY_SSL_HEADER is None
    settings.SECURE_PROXY_SSL_HEADER = reloaded.SECURE_PROXY_SSL_HEADER
    request = RequestFactory().get("/api/me/", HTTP_X_FORWARDED_PROTO="https")
    assert request.is_secure() is False


def test_behind_a_trusted_proxy_its_header_is_believed(reload_settings, settings) -> None:
    reloaded = reload_settings("1")
    assert reloaded.SECURE_PROXY_SSL_HEADER == ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_PROXY_SSL_HEADER = reloaded.SECURE_PROXY_SSL_HEADER
    request = RequestFactory().get("/api/me/", HTTP_X_FORWARDED_PROTO="https")
    assert request.is_secure() is True
