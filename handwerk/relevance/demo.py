"""Realistic German and English craftsman projects for demos and benchmarks (deterministic).

A description reads like one a workshop would write: a project name, the wood, two or three
distinct features of that kind of project (sampled without replacement, so none repeats), and
where and when. Most projects are German; about one in six is written in English.

``demo_corpus`` gives the same projects as ``demo_projects`` together with ``DemoFacts``: what
each description was made of (language, name variant, feature phrases), for judging search
relevance by structure (``handwerk.relevance``). ``tooling.demo`` re-exports it for
``handwerk demo-data``, the bench, scripts/ and tests.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

REGIONS = ["Bayern", "Baden-Württemberg", "Berlin", "Hamburg", "Sachsen", "Hessen",
           "Nordrhein-Westfalen", "Niedersachsen", "Tirol", "Zürich"]
WOODS = {"de": ["Eiche", "Buche", "Nussbaum", "Kiefer", "Fichte", "Lärche", "Esche", "Ahorn",
                "Kirsche", "Zirbe"],
         "en": ["oak", "walnut", "ash", "maple", "cherry", "birch plywood"]}
ENGLISH_SHARE = 1 / 6


@dataclass(frozen=True)
class Kind:
    names: dict[str, list[str]]
    features: dict[str, list[str]]  # German ones read after "mit", English ones after "with"
    area: tuple[float, float]
    price_per_sqm: tuple[float, float]


KINDS: dict[str, Kind] = {
    "kitchen": Kind(
        names={"de": ["Landhausküche", "Grifflose Küche", "Wohnküche", "Einbauküche",
                      "Küchenzeile"],
               "en": ["Shaker kitchen", "Galley kitchen", "Handleless kitchen"]},
        features={"de": ["Kochinsel", "Quarzarbeitsplatte", "integrierten Geräten",
                         "Hochschränken bis zur Decke", "Vorratsauszügen",
                         "geölten Massivholzfronten", "Softclose-Schubladen", "Apothekerschrank",
                         "Frühstückstheke", "offenen Wandregalen", "LED-Unterbauleuchten",
                         "Keramikspüle"],
                  "en": ["a cooking island", "quartz worktops", "integrated appliances",
                         "floor-to-ceiling larder units", "soft-close drawers", "open shelving",
                         "a breakfast bar", "under-cabinet LED lighting", "a ceramic sink"]},
        area=(6, 40), price_per_sqm=(900, 2600)),
    "stairs": Kind(
        names={"de": ["Wangentreppe", "Faltwerktreppe", "Spindeltreppe", "Bolzentreppe",
                      "Halbgewendelte Treppe"],
               "en": ["Floating staircase", "Cut-string staircase", "Spiral staircase"]},
        features={"de": ["Edelstahlgeländer", "Glasbrüstung", "Setzstufen",
                         "LED-Stufenbeleuchtung", "rutschfester Oberfläche",
                         "gedrechselten Geländerstäben", "beidseitigem Handlauf",
                         "Podest auf halber Höhe", "Trittschalldämmung"],
                  "en": ["a glass balustrade", "LED step lights", "oiled treads",
                         "a painted stringer", "a stainless steel handrail", "a half landing",
                         "anti-slip nosings"]},
        area=(3, 15), price_per_sqm=(1500, 5000)),
    "wardrobe": Kind(
        names={"de": ["Einbauschrank", "Begehbarer Kleiderschrank", "Dachschrägenschrank",
                      "Nischenschrank", "Kleiderschrank nach Maß"],
               "en": ["Built-in wardrobe", "Walk-in wardrobe", "Alcove wardrobe"]},
        features={"de": ["Schiebetüren", "Innenbeleuchtung", "Softclose-Schubladen",
                         "Spiegeltüren", "Schuhregal", "Kleiderlift", "Grifffräsung",
                         "Hosenauszug", "Kniestock-Auszügen"],
                  "en": ["mirrored sliding doors", "internal lighting", "a shoe rack",
                         "a pull-down hanging rail", "soft-close drawers", "a trouser rack"]},
        area=(2, 14), price_per_sqm=(700, 2200)),
    "flooring": Kind(
        names={"de": ["Dielenboden", "Fischgrätparkett", "Terrassendeck", "Landhausdielen"],
               "en": ["Wide plank floor", "Herringbone parquet", "Roof terrace deck"]},
        features={"de": ["geölter Oberfläche", "Fußbodenheizung", "schwimmender Verlegung",
                         "neuen Sockelleisten", "Trittschalldämmung", "unsichtbarer Verschraubung",
                         "Aufarbeitung des Altbestands"],
                  "en": ["an oiled finish", "underfloor heating", "hidden fixings",
                         "new skirting boards", "acoustic underlay"]},
        area=(15, 120), price_per_sqm=(80, 260)),
    "windows": Kind(
        names={"de": ["Holzfenster", "Kastenfenster", "Holz-Alu-Fenster", "Verbundfenster"],
               "en": ["Sash window restoration", "Timber casement windows"]},
        features={"de": ["Dreifachverglasung", "Sprossen nach historischem Vorbild",
                         "neuen Anschlussfugen", "Einbruchschutz RC2", "Insektenschutz",
                         "Wetterschenkeln", "weißer Lackierung"],
                  "en": ["triple glazing", "heritage glazing bars", "draught-proofing",
                         "RC2 security hardware", "fly screens"]},
        area=(4, 30), price_per_sqm=(600, 1500)),
    "furniture": Kind(
        names={"de": ["Esstisch", "Bücherregal", "Sideboard", "Schreibtisch", "Garderobe",
                      "Sitzbank"],
               "en": ["Dining table", "Bookcase", "Sideboard", "Desk"]},
        features={"de": ["Baumkante", "verdeckter Kabelführung", "Push-to-open-Fronten",
                         "schwalbenschwanzgezinkten Schubkästen", "Stahlgestell",
                         "Wandmontage", "geölter Oberfläche", "Maßen für eine Altbaunische"],
                  "en": ["a live edge", "hidden cable management", "push-to-open doors",
                         "dovetailed drawers", "a steel frame", "a wall-hung fixing"]},
        area=(1, 6), price_per_sqm=(800, 3500)),
}

MONTHS = {"de": ["März", "Mai", "Juli", "September", "November"],
          "en": ["March", "May", "July", "September", "November"]}
CONTEXTS = {
    "de": ["Für ein Einfamilienhaus in {region}.", "Altbau in {region}, Baujahr {year}.",
           "Neubau in {region}, Montage in {weeks} Wochen.",
           "Sanierung einer Mietwohnung in {region}.",
           "Ferienhaus in {region}, Lieferung bis {month}."],
    "en": ["For a family home in {region}.", "Period property in {region}, built {year}.",
           "New build in {region}, fitting in {weeks} weeks.",
           "Holiday flat in {region}, delivery by {month}."],
}
# {features} is filled with two or three distinct features joined as a list.
TEMPLATES = {
    "de": ["{name} aus {wood} mit {features}. {context} Rund {area} m².",
           "{name} aus {wood}, ausgestattet mit {features}. {context} Fläche {area} m².",
           "{context} {name} aus {wood} mit {features}, etwa {area} m²."],
    "en": ["{name} in {wood} with {features}. {context} About {area} m².",
           "{context} {name} in {wood}, with {features}; {area} m² in total."],
}


def _join(items: list[str], language: str) -> str:
    last = " und " if language == "de" else " and "
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + last + items[-1]


@dataclass(frozen=True)
class DemoFacts:
    """What a generated project was made of, beside the project itself."""

    language: str  # "de" or "en"
    name: str  # the kind's name variant, e.g. "Spindeltreppe" (the project's name adds the wood)
    features: tuple[str, ...]  # the feature phrases, as written in the description


def demo_project(rng: random.Random) -> dict[str, Any]:
    return _drawn(rng)[0]


def _drawn(rng: random.Random) -> tuple[dict[str, Any], DemoFacts]:
    kind_name = rng.choice(list(KINDS))
    kind = KINDS[kind_name]
    language = "en" if rng.random() < ENGLISH_SHARE else "de"
    wood = rng.choice(WOODS[language])
    region = rng.choice(REGIONS)
    area = round(rng.uniform(*kind.area), 1)
    complexity = rng.randint(1, 5)
    price = round(area * rng.uniform(*kind.price_per_sqm) * (0.8 + 0.1 * complexity), -1)
    name = rng.choice(kind.names[language])
    features = rng.sample(kind.features[language], rng.choice([2, 2, 3]))  # no repeats
    context = rng.choice(CONTEXTS[language]).format(
        region=region, year=rng.randrange(1890, 1975), weeks=rng.randint(2, 10),
        month=rng.choice(MONTHS[language]))
    area_text = f"{area:.1f}".replace(".", ",") if language == "de" else f"{area:.1f}"
    description = rng.choice(TEMPLATES[language]).format(
        name=name, wood=wood, features=_join(features, language), context=context, area=area_text)
    project = {"name": f"{name} {wood}", "description": description[0].upper() + description[1:],
               "project_type": kind_name, "region": region, "total_area_sqm": area,
               "wood_type": wood, "complexity": complexity, "final_price": price}
    return project, DemoFacts(language, name, tuple(features))


def demo_projects(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [demo_project(rng) for _ in range(count)]


def demo_corpus(count: int, seed: int = 7) -> list[tuple[dict[str, Any], DemoFacts]]:
    """``demo_projects(count, seed)``, each with the facts it was made of."""
    rng = random.Random(seed)
    return [_drawn(rng) for _ in range(count)]
