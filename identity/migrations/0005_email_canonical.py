"""Store every address in its canonical form (identity.addresses.email_canonical), then drop the
Lower("email") index: uniqueness is the exact unique index on the canonical column.

Before this, spellings of one mailbox ("ſquat@", "squat@", "a@ｅxample.com", "a@example.com")
could be separate accounts. Each group of accounts whose addresses have one canonical form keeps
one account under it: the verified one, else the one that logged in last, else the oldest. The
others, and accounts whose address has no canonical form at all (a non-ASCII local part, a domain
IDNA 2008 refuses), are deactivated and get the undeliverable address
`<reason>+<uid hex>@invalid` (RFC 2606), so they can neither log in nor be mailed; nothing
else of theirs changes, and an operator can restore one from the admin. The migration prints
the uids it set aside (never an address). Reversing it restores the index, not the old spellings.
"""
from django.db import migrations

from identity.addresses import email_canonical_or_none


def _keep_first(user):
    # Sort key: verified first, then the latest login, then the oldest account.
    last_login = user.last_login.timestamp() if user.last_login else float("-inf")
    return (not user.is_verified, -last_login, user.date_joined, user.pk)


def canonicalise_emails(apps, schema_editor):
    User = apps.get_model("identity", "User")
    groups: dict[str, list] = {}
    set_aside = []
    for user in User.objects.all().order_by("pk"):
        canonical = email_canonical_or_none(user.email)
        if canonical is None:
            set_aside.append((user, "uncanonical"))
        else:
            groups.setdefault(canonical, []).append(user)
    keep = {}
    for canonical, users in groups.items():
        users.sort(key=_keep_first)
        keep[canonical] = users[0]
        set_aside.extend((user, "duplicate") for user in users[1:])
    # Set aside first, so no kept account's new address meets an old spelling still in place.
    for user, reason in set_aside:
        user.email = f"{reason}+{user.uid.hex}@invalid"
        user.is_active = False
        user.save(update_fields=["email", "is_active"])
    for canonical, user in keep.items():
        if user.email != canonical:
            user.email = canonical
            user.save(update_fields=["email"])
    if set_aside:
        print(f"\n  identity.0005: set aside {len(set_aside)} account(s): "
              + ", ".join(f"{user.uid} ({reason})" for user, reason in set_aside))


class Migration(migrations.Migration):

    dependencies = [
        ("identity", "0004_preferences_reset_keys"),
    ]

    operations = [
        migrations.RunPython(canonicalise_emails, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="user", name="identity_user_email_ci_unique"),
    ]
