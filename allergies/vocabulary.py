"""The canonical allergen vocabulary: the one place that says what an allergen is called.

Sources:
- EU Regulation (EU) No 1169/2011 on food information to consumers, Annex II ("substances or
  products causing allergies or intolerances"): 14 entries — cereals containing gluten,
  crustaceans, eggs, fish, peanuts, soybeans, milk, nuts (tree nuts), celery, mustard, sesame
  seeds, sulphur dioxide and sulphites, lupin, molluscs.
- US Food Allergen Labeling and Consumer Protection Act of 2004 (FALCPA) and the FASTER Act of
  2021, which added sesame: 9 major food allergens — milk, eggs, fish, crustacean shellfish,
  tree nuts, peanuts, wheat, soybeans, sesame.

Canonical names are lowercase English plurals (or mass nouns), words separated by one space.
The Agent receives exactly these names, so changing one is a data migration, not an edit.

Specific tree nuts and gluten cereals (Annex II names them) are canonical names of their own
with a `group`: someone allergic to walnuts only must not be told they declared "tree nuts",
and two of them in one profile must not collapse into a duplicate.

"shellfish" maps to crustaceans, as FALCPA's "crustacean shellfish" defines it; molluscs
(squid, oysters, mussels...) are their own EU allergen and are declared separately.
"""
import re
import unicodedata
from dataclasses import dataclass

from project.text import invisible_strip

EU = "EU 1169/2011 Annex II"
US = "US FALCPA + FASTER Act"


@dataclass(frozen=True)
class Allergen:
    name: str
    sources: tuple[str, ...] = ()
    synonyms: tuple[str, ...] = ()
    group: str | None = None  # the major allergen this one belongs to, if it is a member of one
    notes: str = ""


ALLERGENS: tuple[Allergen, ...] = (
    # --- The EU 14 / US 9 groups -------------------------------------------------------
    Allergen(
        "gluten",
        (EU,),
        ("cereals containing gluten", "gluten cereals", "glutens", "coeliac", "celiac"),
        notes="EU: cereals containing gluten (wheat, rye, barley, oats, spelt, khorasan).",
    ),
    Allergen("wheat", (EU, US), ("wheats", "wheat flour"), group="gluten"),
    Allergen(
        "crustaceans",
        (EU, US),
        (
            "crustacean",
            "crustacean shellfish",
            "shellfish",
            "shell fish",
            "prawn",
            "prawns",
            "shrimp",
            "shrimps",
            "crab",
            "crabs",
            "lobster",
            "lobsters",
            "crayfish",
            "crawfish",
            "langoustine",
            "langoustines",
            "scampi",
            "krill",
        ),
    ),
    Allergen("eggs", (EU, US), ("egg", "hen egg", "hen eggs", "egg white", "egg whites", "egg yolk", "egg yolks")),
    Allergen(
        "fish",
        (EU, US),
        ("fishes", "finfish", "fin fish", "cod", "salmon", "tuna", "anchovy", "anchovies", "haddock", "pollock"),
    ),
    Allergen(
        "peanuts",
        (EU, US),
        ("peanut", "groundnut", "groundnuts", "ground nut", "ground nuts", "monkey nut", "monkey nuts",
         "arachis", "goober", "goobers"),
    ),
    Allergen(
        "soybeans",
        (EU, US),
        ("soybean", "soy", "soya", "soy bean", "soy beans", "soya bean", "soya beans", "soyabean", "soyabeans",
         "edamame"),
    ),
    Allergen(
        "milk",
        (EU, US),
        ("milks", "dairy", "dairy products", "cow's milk", "cows milk", "cow milk", "milk protein", "casein",
         "whey"),
        notes="Lactose intolerance is not a milk allergy: 'lactose' stays a name of its own.",
    ),
    Allergen(
        "tree nuts",
        (EU, US),
        ("tree nut", "treenuts", "treenut", "nuts", "nut"),
        notes="EU 'nuts' means tree nuts; peanuts are a legume and listed separately.",
    ),
    Allergen("celery", (EU,), ("celeriac", "celery root", "celery seed", "celery seeds", "celeries")),
    Allergen("mustard", (EU,), ("mustards", "mustard seed", "mustard seeds")),
    Allergen("sesame", (EU, US), ("sesame seed", "sesame seeds", "sesames", "tahini", "tahina", "benne", "gingelly")),
    Allergen(
        "sulphites",
        (EU,),
        ("sulphite", "sulfite", "sulfites", "sulphur dioxide", "sulfur dioxide", "so2",
         "sulphur dioxide and sulphites", "sulfur dioxide and sulfites"),
    ),
    Allergen("lupin", (EU,), ("lupins", "lupine", "lupines", "lupin flour", "lupine flour")),
    Allergen(
        "molluscs",
        (EU,),
        ("mollusc", "mollusk", "mollusks", "squid", "squids", "calamari", "octopus", "octopuses", "mussel",
         "mussels", "oyster", "oysters", "clam", "clams", "scallop", "scallops", "snail", "snails", "escargot",
         "cuttlefish"),
    ),
    # --- Members named by Annex II: cereals containing gluten ----------------------------
    Allergen("rye", (EU,), ("ryes",), group="gluten"),
    Allergen("barley", (EU,), ("barleys",), group="gluten"),
    Allergen("oats", (EU,), ("oat",), group="gluten"),
    Allergen("spelt", (EU,), ("spelts",), group="gluten"),
    Allergen("khorasan", (EU,), ("khorasan wheat", "kamut"), group="gluten"),
    # --- Members named by Annex II: tree nuts ---------------------------------------------
    Allergen("almonds", (EU,), ("almond",), group="tree nuts"),
    Allergen("hazelnuts", (EU,), ("hazelnut", "filbert", "filberts", "cobnut", "cobnuts"), group="tree nuts"),
    Allergen("walnuts", (EU,), ("walnut",), group="tree nuts"),
    Allergen("cashews", (EU,), ("cashew", "cashew nut", "cashew nuts"), group="tree nuts"),
    Allergen("pecans", (EU,), ("pecan", "pecan nut", "pecan nuts"), group="tree nuts"),
    Allergen("brazil nuts", (EU,), ("brazil nut", "brazilnut", "brazilnuts"), group="tree nuts"),
    Allergen("pistachios", (EU,), ("pistachio", "pistachio nut", "pistachio nuts"), group="tree nuts"),
    Allergen(
        "macadamia nuts",
        (EU,),
        ("macadamia", "macadamias", "macadamia nut", "queensland nut", "queensland nuts"),
        group="tree nuts",
    ),
)

#: Longest allergen name accepted, after normalisation.
MAX_NAME_LENGTH = 64

_SPACES = re.compile(r"[\s_\-]+")


def _key(raw: str) -> str:
    """Case and spacing folded: invisible characters dropped ("pea\u200bnuts" is "peanuts", not
    a new allergen), NFKC, casefold, curly quotes straightened, runs of spaces, underscores and
    hyphens become one space."""
    text = unicodedata.normalize("NFKC", invisible_strip(raw)).replace("\u2019", "'").casefold()
    return _SPACES.sub(" ", text).strip()


def _build_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for allergen in ALLERGENS:
        for term in (allergen.name, *allergen.synonyms):
            key = _key(term)
            if index.get(key, allergen.name) != allergen.name:
                raise ValueError(f"vocabulary term {term!r} maps to two allergens")
            index[key] = allergen.name
    return index


_INDEX = _build_index()
CANONICAL_NAMES: frozenset[str] = frozenset(a.name for a in ALLERGENS)
BY_NAME: dict[str, Allergen] = {a.name: a for a in ALLERGENS}


def allergen_normalize(raw: str) -> str:
    """The canonical name of `raw`, or `raw` folded in case and spacing when it is unknown.

    Known terms and their simple English plural/singular variants ("cashew" / "cashews",
    "anchovies" / "anchovy") map to the canonical name.
    """
    key = _key(raw)
    if key in _INDEX:
        return _INDEX[key]
    for variant in _plural_variants(key):
        if variant in _INDEX:
            return _INDEX[variant]
    return key


def _plural_variants(key: str) -> tuple[str, ...]:
    variants = [key + "s", key + "es"]
    if key.endswith("ies"):
        variants.append(key[:-3] + "y")
    if key.endswith("es"):
        variants.append(key[:-2])
    if key.endswith("s"):
        variants.append(key[:-1])
    return tuple(variants)
