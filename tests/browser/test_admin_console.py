"""The operator's console in a real browser, against a real stack (gunicorn, DEBUG=0):
log into the admin, replay a dead letter, and check Swagger UI renders from loopback only."""
import json
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.e2e.harness import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

ADMIN_EMAIL = "operator@example.com"
ADMIN_PASSWORD = "operator-passphrase-" + "7" * 8
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _create_superuser(stack) -> None:
    stack.manage(
        "shell", "-c",
        "from identity.models import User; "
        f"User.objects.create_superuser(email={ADMIN_EMAIL!r}, password={ADMIN_PASSWORD!r})",
    )


def _dead_letter_a_signup(stack) -> None:
    """The double refuses the consumer's token (401 INVALID_SERVICE_TOKEN): a permanent failure."""
    # The operator (createsuperuser goes through the same service) reaches the Agent first.
    wait_for(lambda: len(stack.agent.state()["users"]) == 1, timeout=60, what="the operator at the Agent")
    stack.agent.fault(status=401, paths=r"^/users/")
    body = {"username": "ada", "email": "ada@example.com", "password": "a-long-passphrase-42"}
    assert stack.api("POST", "/api/signup/", json=body).status_code == 201
    wait_for(lambda: stack.bus_status()["dead_letters"] >= 1, timeout=60, interval=0.5, what="a dead letter")
    stack.agent.clear_faults()
    assert len(stack.agent.state()["users"]) == 1  # the signup did not reach it


def _log_in(browser, stack) -> None:
    browser.get(f"{stack.api_url}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys(ADMIN_EMAIL)
    browser.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    # The login page has #site-name too: wait for the redirect away from it, not for the header.
    WebDriverWait(browser, 30).until(lambda driver: "/admin/login/" not in driver.current_url)
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "site-name")))


def test_an_operator_replays_a_dead_letter_from_the_admin(stack, browser, screenshot) -> None:
    _create_superuser(stack)
    _dead_letter_a_signup(stack)

    _log_in(browser, stack)
    browser.get(f"{stack.api_url}/admin/consumers/deadletter/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1 and "user.registered" in rows[0].text, browser.page_source[:2000]
    # The admin's own CSS is served (WhiteNoise under gunicorn): the page is styled, not bare HTML.
    assert browser.execute_script("return document.styleSheets.length") >= 1
    assert browser.find_element(By.ID, "header").value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"

    screenshot("dead-letters-before-replay")
    rows[0].find_element(By.CSS_SELECTOR, "input.action-select").click()
    actions = Select(browser.find_element(By.NAME, "action"))
    replay = next(option for option in actions.options if "replay" in option.text.lower())
    actions.select_by_value(replay.get_attribute("value"))
    browser.find_element(By.CSS_SELECTOR, "button[name=index], input[name=index]").click()

    message = WebDriverWait(browser, 30).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li"))
    )
    screenshot("dead-letters-replayed")
    assert "success" in message.get_attribute("class"), message.text
    assert "Replayed 1" in message.text

    # The replayed event really went out again: the user reaches the Agent.
    wait_for(lambda: len(stack.agent.state()["users"]) == 2, timeout=60, what="the replayed signup at the Agent")


def test_swagger_ui_renders_without_any_request_leaving_loopback(stack, browser, screenshot) -> None:
    browser.get(f"{stack.api_url}/api/docs/")
    title = WebDriverWait(browser, 60).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title"))
    )
    assert "Kairos" in title.text
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, ".swagger-ui .opblock")))
    screenshot("swagger-ui")

    entries = browser.execute_script(
        "return performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".map(e => e.name)"
    )
    assert any("/api/schema/" in url for url in entries), entries
    assert any("swagger-ui" in url and url.endswith(".js") for url in entries), entries
    hosts = {urlsplit(url).hostname for url in entries if urlsplit(url).scheme in ("http", "https", "ws", "wss")}
    assert hosts <= LOOPBACK, json.dumps(entries, indent=1)
