"""Issue 11, findings 5 and 6: one mailbox is one account, whatever the spelling.

The attack (5): Unicode spellings of one ASCII address (fullwidth letters, a zero-width space,
a soft hyphen, an ideographic full stop, NFC vs NFD) made separate accounts whose mail all went
to the same mailbox, each with its own per-email throttle allowance. (6): on PostgreSQL,
`\u017fquat@` (U+017F, long s) squatted `squat@` for good, since the lookup folded with UPPER() and the
unique index with LOWER(). Now every flow canonicalises the address first
(identity/addresses.py) and stores and compares the canonical form exactly.
"""
import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from identity.addresses import EmailNotCanonical, email_canonical
from identity.models import User

pytestmark = [pytest.mark.security, pytest.mark.django_db, pytest.mark.usefixtures("clear_cache")]

PASSWORD = "a-long-passphrase-42"
ADDRESS = "victim@example.com"
# Spellings that reach the mailbox victim@example.com.
SPELLINGS = {
    "upper case": "Victim@EXAMPLE.com",
    "fullwidth domain": "victim@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
    "fullwidth local part": "\uff56ictim@example.com",
    "compatibility letter (small roman numeral one)": "v\u2170ctim@example.com",  # U+2170 small roman numeral one
    "fullwidth at sign": "victim\uff20example.com",
    "zero-width space in the domain": "victim@exam\u200bple.com",
    "zero-width space in the local part": "vic\u200btim@example.com",
    "soft hyphen in the domain": "victim@exam\u00adple.com",
    "soft hyphen in the local part": "vic\u00adtim@example.com",
    "word joiner": "victim@example\u2060.com",
    "byte-order mark": "\ufeffvictim@example.com",
    "ideographic full stop": "victim@example\u3002com",
    "fullwidth full stop": "victim@example\uff0ecom",
    "trailing root dot": "victim@example.com.",
    "surrounding spaces": "  victim@example.com ",
    "quoted local part": '"victim"@example.com',
    "quoted pair": '"vic\\tim"@example.com',
}
IDN_ADDRESS = "chef@xn--bcher-kva.example"
IDN_SPELLINGS = {
    "NFC": "chef@b\u00fccher.example",
    "NFD": "chef@bu\u0308cher.example",
    "A-label": "chef@xn--bcher-kva.example",
    "upper case NFC": "CHEF@B\u00dcCHER.EXAMPLE",
}


def signup(client: APIClient, email: str, username: str = "someone"):
    return client.post("/api/signup/", {"username": username, "email": email, "password": PASSWORD}, format="json")


@pytest.fixture(autouse=True)
def no_throttles(settings) -> None:
    settings.THROTTLING_ENABLED = False


@pytest.mark.parametrize(("name", "spelling"), SPELLINGS.items(), ids=list(SPELLINGS))
def test_a_spelling_of_a_mailbox_is_its_canonical_address(name, spelling) -> None:
    assert email_canonical(spelling) == ADDRESS


@pytest.mark.parametrize(("name", "spelling"), IDN_SPELLINGS.items(), ids=list(IDN_SPELLINGS))
def test_an_internationalised_domain_has_one_form(name, spelling) -> None:
    assert email_canonical(spelling) == IDN_ADDRESS


def test_every_spelling_of_one_mailbox_is_one_account(outbox) -> None:
    client = APIClient()
    spellings = [ADDRESS, "\u017fquat@example.com", *SPELLINGS.values(), *IDN_SPELLINGS.values()]
    for spelling in spellings:
        assert signup(client, spelling).status_code == 201, spelling
    assert sorted(User.objects.values_list("email", flat=True)) == sorted(
        {ADDRESS, "squat@example.com", IDN_ADDRESS}
    )
    # The later spellings only told the owner "you already have an account".
    kinds = [event.data["kind"] for event in outbox("email.requested")]
    assert kinds.count("verify") == 3 and kinds.count("account_exists") == len(spellings) - 3


def test_every_flow_finds_the_account_under_any_spelling(verified_user, outbox) -> None:
    client = APIClient()
    spelling = "ADA@\uff45xam\u200bple\u3002com"  # verified_user is ada@example.com
    login = client.post("/api/login/", {"email": spelling, "password": PASSWORD}, format="json")
    assert login.status_code == 200, login.content
    assert client.post("/api/password/reset/", {"email": spelling}, format="json").status_code == 202
    [event] = outbox("email.requested")
    assert event.uid == verified_user.uid and event.data == {"kind": "password_reset"}


def test_spellings_share_one_per_email_throttle(settings, clear_cache) -> None:
    settings.THROTTLING_ENABLED = True
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "signup": "100/hour", "signup_email": "3/hour"}
    client = APIClient()
    statuses = [signup(client, spelling).status_code for spelling in list(SPELLINGS.values())[:6]]
    assert statuses == [201, 201, 201, 429, 429, 429]


@pytest.mark.parametrize(
    "address",
    [
        "\u0131squat@example.com",  # dotless i: no ASCII form (UPPER() makes it "I" on PostgreSQL)
        "m\u00fcller@example.com",  # a non-ASCII local part: refused rather than guessed at
        "victim@exa\u200dmple.com",  # a zero-width joiner where IDNA 2008 forbids it
        "victim@-example.com",
        "victim@[127.0.0.1]",
        '"vic tim"@example.com',  # a quoted local part that is no dot-atom
        "stra\u00dfe@example.com",  # sharp s: full case folding would make it another mailbox, "strasse"
        "\u0130stanbul@example.com",  # dotted capital I: lower-cases to i + combining dot
    ],
)
def test_an_address_without_a_canonical_form_is_refused_everywhere(address) -> None:
    with pytest.raises(EmailNotCanonical):
        email_canonical(address)
    client = APIClient()
    answer = signup(client, address)
    assert answer.status_code == 400 and "email" in answer.json()["errors"], answer.content
    for path in ("/api/verify/resend/", "/api/password/reset/"):
        assert client.post(path, {"email": address}, format="json").status_code == 400
    assert client.post("/api/login/", {"email": address, "password": PASSWORD}, format="json").status_code == 400
    assert not User.objects.exists()


def test_the_squatter_cannot_keep_the_owner_out(outbox, settings) -> None:
    """Finding 6 as the attacker played it: long-s `squat@` first, then the owner of `squat@`."""
    client = APIClient()
    assert signup(client, "\u017fquat@example.com", username="mallory").status_code == 201
    assert signup(client, "squat@example.com", username="owner").status_code == 201
    [account] = User.objects.all()
    assert account.email == "squat@example.com"
    # Both emails went to the owner's mailbox, who can take the account over by a reset.
    from consumers.handlers import handle_email_requested

    for event in outbox("email.requested"):
        handle_email_requested(event.envelope, agent=None)
    assert {tuple(message.to) for message in mail.outbox} == {("squat@example.com",)}


@pytest.mark.postgres
def test_on_postgresql_lookup_and_uniqueness_fold_alike() -> None:
    """PostgreSQL: UPPER() of long s (U+017F) is 'S' but LOWER() leaves it. The stored form is ASCII, and there is
    no index folding it a second way."""
    assert connection.vendor == "postgresql"
    client = APIClient()
    for spelling in ("\u017fquat@example.com", "squat@example.com", "SQUAT@example.com", "\u017fQUAT@example.com"):
        assert signup(client, spelling).status_code == 201
    assert list(User.objects.values_list("email", flat=True)) == ["squat@example.com"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [User._meta.db_table])
        indexes = [row[0] for row in cursor.fetchall()]
    assert not [index for index in indexes if "lower(" in index.lower() or "upper(" in index.lower()], indexes


@pytest.mark.django_db(transaction=True)
def test_the_migration_canonicalises_rows_and_sets_collisions_aside() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("identity", "0004_preferences_reset_keys")])
    old = executor.loader.project_state([("identity", "0004_preferences_reset_keys")]).apps
    OldUser = old.get_model("identity", "User")
    from django.utils import timezone

    now = timezone.now()
    rows = {
        "kept": OldUser.objects.create(email="Ada@Example.com", username="a", is_verified=True, date_joined=now),
        "dup": OldUser.objects.create(email="ada@\uff45xample.com", username="b", date_joined=now),
        "squat": OldUser.objects.create(email="\u017fquat@example.com", username="c", date_joined=now),
        "bad": OldUser.objects.create(email="\u0131squat@example.com", username="d", date_joined=now),
        "idn": OldUser.objects.create(email="x@B\u00fccher.example", username="e", date_joined=now),
    }
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    users = {name: User.objects.get(pk=row.pk) for name, row in rows.items()}
    assert users["kept"].email == "ada@example.com" and users["kept"].is_active
    assert users["squat"].email == "squat@example.com" and users["squat"].is_active
    assert users["idn"].email == "x@xn--bcher-kva.example"
    for name in ("dup", "bad"):
        assert not users[name].is_active and users[name].email.endswith("@invalid"), name
        assert users[name].uid.hex in users[name].email


def test_the_admin_login_and_the_admin_form_use_the_canonical_form_too(verified_user) -> None:
    """Siblings outside the API: Django's ModelBackend (the admin login) looks users up through
    the manager, and the admin's change form saves through User.clean()."""
    from django.contrib.auth import authenticate

    assert authenticate(username="ADA@\uff45xample\u3002com", password=PASSWORD) == verified_user
    assert authenticate(username="\u0131da@example.com", password=PASSWORD) is None
    verified_user.email = "Ada.New@\uff45xample.com"
    verified_user.full_clean()
    assert verified_user.email == "ada.new@example.com"
    User.objects.create_user("Owner@Example.com", PASSWORD, username="owner")
    clash = User(email="owner@\uff45xample.com", username="x", password="!")
    with pytest.raises(ValidationError, match="already exists"):
        clash.full_clean()
