"""The operator's page (/admin/operations/) in headless Chromium against a real stack: a dead
letter and a backlog are shown by type, and the dead letter is replayed from the page."""
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_admin_console import _create_superuser, _dead_letter_a_signup, _log_in
from tests.e2e.harness import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


def _backlog_of_allergy_changes(stack) -> None:
    """Stop the consumers, then change an allergy profile: the event waits in the backlog."""
    for name in [name for name in stack.processes if name.startswith("consumer")]:
        stack.kill(name)
    body = {"username": "lin", "email": "lin@example.com", "password": "a-long-passphrase-42"}
    assert stack.api("POST", "/api/signup/", json=body).status_code == 201
    stack.manage("shell", "-c", "from identity.models import User; User.objects.update(is_verified=True)")
    login = stack.api("POST", "/api/login/", json={"email": "lin@example.com", "password": body["password"]})
    token = login.json()["token"]
    allergies = {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "anaphylactic"}}
    assert stack.api("PUT", "/api/allergies/", token=token, json=allergies).status_code == 200
    if stack.amqp_url:  # the relay still publishes; the backlog is what no consumer settled
        wait_for(lambda: stack.bus_status()["backlog"] >= 2, timeout=30, what="the backlog")


def test_the_operator_page_shows_a_dead_letter_and_a_backlog_and_replays(stack, browser, screenshot) -> None:
    _create_superuser(stack)
    _dead_letter_a_signup(stack)
    users_before = len(stack.agent.state()["users"])  # the operator's own account
    _backlog_of_allergy_changes(stack)

    _log_in(browser, stack)
    browser.find_element(By.CSS_SELECTOR, "#operations-link caption a").click()  # from the admin index
    WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.ID, "backlog")))
    screenshot("operator-console")

    backlog = {
        row.get_attribute("data-type"): row.find_element(By.CSS_SELECTOR, ".backlog").text
        for row in browser.find_elements(By.CSS_SELECTOR, "#backlog tr.backlog-row")
    }
    assert backlog.get("allergies.replaced") == "1", browser.page_source[:3000]
    assert backlog.get("user.registered") == "1"  # lin's signup, also undelivered
    dead = browser.find_elements(By.CSS_SELECTOR, "#dead-letters tr.dead-letter-row")
    assert len(dead) == 1 and dead[0].get_attribute("data-type") == "user.registered"
    assert "401" in dead[0].find_element(By.CSS_SELECTOR, ".reason").text
    assert dead[0].find_element(By.CSS_SELECTOR, ".count").text == "1"
    # The sync-state links lead to the filtered allergy list: lin's profile is pending.
    assert "pending: 1" in browser.find_element(By.ID, "content-main").text
    # Partitions exist on RabbitMQ only (the consumers took them at start); verification always shows.
    partitions = browser.find_elements(By.CSS_SELECTOR, "#partition-list tr.partition-row")
    assert (len(partitions) > 0) == bool(stack.amqp_url), browser.find_element(By.ID, "partition-list").text
    assert browser.find_element(By.ID, "verification-figures").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "#drift .drift-allergies").text == "allergies: 0"

    dead[0].find_element(By.CSS_SELECTOR, "button.replay").click()
    message = WebDriverWait(browser, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "ul.messagelist li")))
    screenshot("operator-console-replayed")
    assert "success" in message.get_attribute("class") and "replayed 1" in message.text, message.text
    assert not browser.find_elements(By.CSS_SELECTOR, "#dead-letters tr.dead-letter-row")

    # Consumers back: the replayed signup and the backlog reach the Agent.
    stack.start_consumer(0)
    wait_for(lambda: len(stack.agent.state()["users"]) == users_before + 2, timeout=60,
             what="the replayed and the waiting user at the Agent")
