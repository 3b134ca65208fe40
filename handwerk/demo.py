"""Realistic German and English craftsman projects for demos and benchmarks (deterministic)."""

from __future__ import annotations

import random
from typing import Any

REGIONS = ["Bayern", "Baden-Württemberg", "Berlin", "Hamburg", "Sachsen", "Hessen",
           "Nordrhein-Westfalen", "Niedersachsen", "Tirol", "Zürich"]
WOODS = ["Eiche", "Buche", "Nussbaum", "Kiefer", "Fichte", "Lärche", "Esche", "Ahorn",
         "Kirsche", "Zirbe", "oak", "walnut", "birch plywood"]

KINDS: dict[str, dict[str, Any]] = {
    "kitchen": {
        "names": ["Landhausküche", "Grifflose Küche", "Küche mit Kochinsel", "Shaker kitchen",
                  "Galley kitchen", "Wohnküche"],
        "details": ["mit Kochinsel und Quarzarbeitsplatte", "mit integrierten Geräten und "
                    "Hochschränken", "in L-Form mit Vorratsauszügen", "with a breakfast bar and "
                    "open shelving", "mit geölten Massivholzfronten", "with soft-close drawers "
                    "and a pantry unit"],
        "area": (6, 40), "price_per_sqm": (900, 2600),
    },
    "stairs": {
        "names": ["Wangentreppe", "Faltwerktreppe", "Spindeltreppe", "Bolzentreppe",
                  "Floating staircase", "Attic ladder stair"],
        "details": ["über zwei Geschosse mit Edelstahlgeländer", "halbgewendelt mit "
                    "Setzstufen", "with glass balustrade and LED step lights", "als "
                    "Renovierung einer Altbautreppe", "mit rutschfesten Trittstufen",
                    "with oiled treads and a painted stringer"],
        "area": (3, 15), "price_per_sqm": (1500, 5000),
    },
    "wardrobe": {
        "names": ["Einbauschrank", "Begehbarer Kleiderschrank", "Dachschrägenschrank",
                  "Built-in wardrobe", "Schiebetürenschrank"],
        "details": ["unter der Dachschräge mit Schiebetüren", "mit Innenbeleuchtung und "
                    "Schubladen", "floor to ceiling with mirrored doors", "mit "
                    "Schuhregal und Kleiderlift", "in Nischenbauweise mit Grifffräsung"],
        "area": (2, 14), "price_per_sqm": (700, 2200),
    },
    "flooring": {
        "names": ["Dielenboden", "Parkett Fischgrät", "Terrassendeck", "Wide plank floor"],
        "details": ["geölt, schwimmend verlegt", "verklebt mit Fußbodenheizung",
                    "for a roof terrace, screwed from below", "restauriert und neu versiegelt"],
        "area": (15, 120), "price_per_sqm": (80, 260),
    },
    "windows": {
        "names": ["Holzfenster", "Kastenfenster Sanierung", "Holz-Alu-Fenster",
                  "Sash window restoration"],
        "details": ["dreifach verglast, Denkmalschutz", "mit Sprossen nach historischem Vorbild",
                    "draught-proofed and repainted", "inklusive Einbau und Anschlussfugen"],
        "area": (4, 30), "price_per_sqm": (600, 1500),
    },
    "furniture": {
        "names": ["Esstisch", "Bücherregal", "Sideboard", "Dining table", "Schreibtisch",
                  "Garderobe"],
        "details": ["aus Massivholz mit Baumkante", "with hidden cable management",
                    "wandhängend mit Push-to-open", "nach Maß für eine Altbaunische",
                    "ausziehbar für zwölf Personen"],
        "area": (1, 6), "price_per_sqm": (800, 3500),
    },
}


def demo_project(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(list(KINDS))
    spec = KINDS[kind]
    wood = rng.choice(WOODS)
    region = rng.choice(REGIONS)
    area = round(rng.uniform(*spec["area"]), 1)
    complexity = rng.randint(1, 5)
    price = round(area * rng.uniform(*spec["price_per_sqm"]) * (0.8 + 0.1 * complexity), -1)
    name = f"{rng.choice(spec['names'])} {wood}"
    description = (f"{rng.choice(spec['names'])} {rng.choice(spec['details'])}, "
                   f"{rng.choice(spec['details'])}. Holzart {wood}, {area} m², Region {region}.")
    return {"name": name, "description": description, "project_type": kind, "region": region,
            "total_area_sqm": area, "wood_type": wood, "complexity": complexity,
            "final_price": price}


def demo_projects(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [demo_project(rng) for _ in range(count)]
