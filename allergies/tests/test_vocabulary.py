import pytest

from allergies import vocabulary
from allergies.vocabulary import ALLERGENS, CANONICAL_NAMES, allergen_normalize


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        # Case, spacing, plurals and synonyms of the EU 14 / US 9.
        ("peanuts", "peanuts"),
        ("Peanut", "peanuts"),
        ("  PEANUTS ", "peanuts"),
        ("groundnuts", "peanuts"),
        ("Ground-Nut", "peanuts"),
        ("monkey   nuts", "peanuts"),
        ("prawns", "crustaceans"),
        ("Shrimp", "crustaceans"),
        ("shellfish", "crustaceans"),
        ("crustacean shellfish", "crustaceans"),
        ("lobster", "crustaceans"),
        ("egg", "eggs"),
        ("Eggs", "eggs"),
        ("dairy", "milk"),
        ("Cow\u2019s milk", "milk"),  # a curly apostrophe
        ("fish", "fish"),
        ("salmon", "fish"),
        ("tree nut", "tree nuts"),
        ("tree_nuts", "tree nuts"),
        ("Tree-Nuts", "tree nuts"),
        ("nuts", "tree nuts"),
        ("wheat", "wheat"),
        ("soy", "soybeans"),
        ("Soya", "soybeans"),
        ("soybean", "soybeans"),
        ("sesame seeds", "sesame"),
        ("tahini", "sesame"),
        ("celeriac", "celery"),
        ("mustard seed", "mustard"),
        ("sulfites", "sulphites"),
        ("sulphur dioxide", "sulphites"),
        ("SO2", "sulphites"),
        ("lupine", "lupin"),
        ("squid", "molluscs"),
        ("mollusk", "molluscs"),
        ("oysters", "molluscs"),
        ("cereals containing gluten", "gluten"),
        # Annex II members keep their own name (not widened to their group).
        ("almond", "almonds"),
        ("Cashew Nuts", "cashews"),
        ("walnut", "walnuts"),
        ("Brazil nut", "brazil nuts"),
        ("macadamia", "macadamia nuts"),
        ("kamut", "khorasan"),
        ("oat", "oats"),
        # Simple plural/singular variants found without listing them.
        ("anchovy", "fish"),
        ("pistachioes", "pistachios"),
        # Unknown names are kept, folded in case and spacing.
        ("Lactose", "lactose"),
        ("  Kiwi   Fruit ", "kiwi fruit"),
        ("NIGHTSHADES", "nightshades"),
        ("ÉPICES", "épices"),
    ],
)
def test_allergen_normalize(raw: str, canonical: str) -> None:
    assert allergen_normalize(raw) == canonical


def test_the_vocabulary_covers_the_eu_14_and_the_us_9() -> None:
    eu_14 = {"gluten", "crustaceans", "eggs", "fish", "peanuts", "soybeans", "milk", "tree nuts", "celery",
             "mustard", "sesame", "sulphites", "lupin", "molluscs"}
    us_9 = {"milk", "eggs", "fish", "crustaceans", "tree nuts", "peanuts", "wheat", "soybeans", "sesame"}
    assert eu_14 <= CANONICAL_NAMES
    assert us_9 <= CANONICAL_NAMES
    by_name = vocabulary.BY_NAME
    assert all(vocabulary.EU in by_name[name].sources for name in eu_14)
    assert all(vocabulary.US in by_name[name].sources for name in us_9)


def test_canonical_names_are_their_own_normal_form() -> None:
    for allergen in ALLERGENS:
        assert allergen_normalize(allergen.name) == allergen.name
        for synonym in allergen.synonyms:
            assert allergen_normalize(synonym) == allergen.name


def test_groups_name_canonical_allergens() -> None:
    assert {a.group for a in ALLERGENS if a.group} <= CANONICAL_NAMES
