"""The admin filters allergy profiles by the sync state the user sees."""
import pytest
from django.utils import timezone

from allergies.models import AllergyProfile
from allergies.selectors import AllergyState, allergy_profile_sync_counts
from identity.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def profiles() -> dict[str, AllergyProfile]:
    def make(name: str, **fields) -> AllergyProfile:
        user = User.objects.create_user(email=f"{name}@example.com", password="x", username=name)
        return AllergyProfile.objects.create(user=user, **fields)

    return {
        "synced": make("synced", revision=3, synced_revision=3),
        "pending": make("pending", revision=3, synced_revision=2),
        "failing": make("failing", revision=3, synced_revision=2, sync_failed_at=timezone.now()),
    }


@pytest.mark.parametrize("state", ["synced", "pending", "failing"])
def test_the_list_filters_by_sync_state(admin_client, profiles, state) -> None:
    response = admin_client.get("/admin/allergies/allergyprofile/", {"sync_state": state})

    assert response.status_code == 200
    shown = list(response.context["cl"].result_list)
    assert shown == [profiles[state]]
    assert AllergyState.of(shown[0]).sync_state == state


def test_the_counts_agree_with_the_filter(profiles) -> None:
    assert allergy_profile_sync_counts() == {"synced": 1, "pending": 1, "failing": 1}
