"""Email addresses: the one canonical form used for every lookup, throttle key and uniqueness check."""


def email_canonical(raw: str) -> str:
    """The canonical form of an address as typed by a user (every flow that takes an email calls this)."""
    local, sep, domain = raw.strip().rpartition("@")
    return f"{local}{sep}{domain}".lower() if sep else raw.strip().lower()
