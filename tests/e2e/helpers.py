"""Helpers for end-to-end tests that need a logged-in user (owned with the allergy sync tests)."""
import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path

from tests.e2e.harness import Stack, wait_for

PASSWORD = "a-long-passphrase-42"
_VERIFY_LINK = re.compile(r"/verify/(?P<token>[^\s/]+)")


@dataclass(frozen=True)
class LoggedInUser:
    email: str
    uid: str  # the auth_id the frontend sends to the Agent
    token: str  # this backend's credential
    password: str = PASSWORD


def _verification_token(email_dir: Path, address: str, link: re.Pattern = _VERIFY_LINK) -> str | None:
    """The token of the newest verification email (or other `link`) to `address` written by the file backend."""
    found = None
    for path in sorted(email_dir.glob("*.log"), key=lambda p: p.stat().st_mtime) if email_dir.exists() else []:
        # The file backend separates messages with a line of 79 dashes.
        for raw in path.read_bytes().split(b"\n" + b"-" * 79 + b"\n"):
            if not raw.strip():
                continue
            message = message_from_bytes(raw.strip(), policy=policy.default)
            if address not in str(message.get("To", "")):
                continue
            body = message.get_body(preferencelist=("plain",))
            match = link.search(body.get_content() if body else "")
            if match:
                found = match["token"]
    return found


def create_verified_user(stack: Stack, *, email: str, username: str = "ada") -> LoggedInUser:
    """Sign up through the API, follow the verification link the consumer emailed, log in."""
    response = stack.api("POST", "/api/signup/", json={"username": username, "email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    token = wait_for(
        lambda: _verification_token(stack.workdir / "emails", email), timeout=60, what=f"the email to {email}"
    )
    verified = stack.api("GET", f"/api/verify/{token}/")
    assert verified.status_code == 200, verified.text
    login = stack.api("POST", "/api/login/", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    body = login.json()
    return LoggedInUser(email=email, uid=body["auth_id"], token=body["token"])


def signup(stack: Stack, email: str, *, username: str = "ada") -> dict:
    """POST /api/signup/ and expect 201; the answer's body."""
    body = {"username": username, "email": email, "password": PASSWORD}
    response = stack.api("POST", "/api/signup/", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def put_allergies(stack: Stack, user: LoggedInUser, body: dict) -> dict:
    """PUT /api/allergies/ and expect 200; the profile answered (with its revision and sync state)."""
    response = stack.api("PUT", "/api/allergies/", token=user.token, json=body)
    assert response.status_code == 200, response.text
    return response.json()
