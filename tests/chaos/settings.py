"""Settings of the chaos run's processes: production settings with a fast password hasher.

Argon2 costs 1-3 s per signup or login on a loaded 2-core CI machine, which would starve the
run of actions; what the chaos run tests is the event pipeline, not password hashing.
"""

from project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
