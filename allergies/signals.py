"""Domain signals of the allergies app; sent only from allergies.services, inside the transaction."""
from django.dispatch import Signal

allergy_profile_replaced = Signal()
"""The allergy profile was replaced or cleared. Payload: `uid` (uuid.UUID), `revision` (int),
`confirmed` (list[str]), `intolerances` (list[str]), `severity` (dict[str, str]),
`allergy_flags` (list[str]) — the full state after the change."""
