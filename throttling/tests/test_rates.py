import pytest
from django.core.exceptions import ImproperlyConfigured

from throttling.rates import Rate, rate_get, rate_parse


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10/min", Rate(10, 60)),
        ("20/5min", Rate(20, 300)),
        ("3/10m", Rate(3, 600)),
        ("5/hour", Rate(5, 3600)),
        ("2/day", Rate(2, 86400)),
        ("7/s", Rate(7, 1)),
        (" 4 / 2 HOURS ", Rate(4, 7200)),
    ],
)
def test_rates_parse(text: str, rate: Rate) -> None:
    assert rate_parse(text) == rate


@pytest.mark.parametrize("text", ["", "10", "ten/min", "10/week", "10/0min", "-1/min", "10/min/2"])
def test_bad_rates_are_a_configuration_error(text: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        rate_parse(text)


def test_a_scope_missing_from_the_overrides_keeps_its_default(settings) -> None:
    settings.THROTTLE_RATES = {"login": "1/min"}
    assert rate_get("login") == Rate(1, 60)
    assert rate_get("login_email") == rate_parse(settings.DEFAULT_THROTTLE_RATES["login_email"])


def test_an_unknown_scope_is_an_error_not_an_open_door(settings) -> None:
    with pytest.raises(ImproperlyConfigured):
        rate_get("logni")
