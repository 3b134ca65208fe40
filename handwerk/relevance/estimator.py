"""Class ``estimator``: queries as an estimator types them while pricing a new job, written by
hand, each with its judging rule written next to it.

The rule of a query is an ``Intent`` (``judge``): the project type it asks for, and the aspects
the text really asks for: the item (name variant; "Wendeltreppe" is ``spiral``), the wood, the
features (concept ids of ``features``), a region, a price band. A project grades 0 when of
another type, else 1 + one point per named aspect it matches. What a text says but the corpus
cannot tell apart is left out of its rule (a floor area, "Altbau", "günstig", a wood the demo
corpus has no word for); a negation ("ohne Setzstufen") names nothing.
"""

from __future__ import annotations

from typing import Any

from handwerk.relevance.judge import Intent
from handwerk.relevance.queries import Query


def _q(text: str, kind: str, item: str | None = None, wood: str | None = None,
       *features: str, **aspects: Any) -> Query:
    return Query("estimator", text, Intent(kind, item, wood, tuple(features), **aspects))


ESTIMATOR: tuple[Query, ...] = (
    # kitchen
    _q("Landhausküche in Eiche mit Kochinsel für ein Einfamilienhaus", "kitchen", "country", "oak",
       "island"),
    _q("Kunde will grifflose Küche mit Quarzplatte und integrierten Geräten", "kitchen", "handleless",
       None, "quartz", "appliances"),
    _q("Wohnküche Nussbaum, große Insel, Frühstückstresen", "kitchen", "living_kitchen", "walnut",
       "island", "breakfast_bar"),
    _q("Küchenzeile Buche für eine Mietwohnung, unter 20.000 €", "kitchen", "kitchen_row", "beech",
       price=(0, 20_000)),
    _q("Einbauküche mit Apothekerauszug und Vorratsschubladen", "kitchen", "fitted_kitchen", None,
       "pharmacy", "pantry"),
    _q("Küche Esche, offene Regale statt Oberschränke", "kitchen", None, "ash", "open_shelves"),
    _q("Was kostet eine Küche mit Keramikspüle und LED unter den Hängeschränken?", "kitchen", None,
       None, "sink", "led_under"),
    _q("Shaker-Küche aus Birkensperrholz", "kitchen", "shaker", "birch_ply"),
    _q("Küche mit Hochschränken bis unter die Decke in Ahorn", "kitchen", None, "maple", "tall_units"),
    _q("Kücheninsel Eiche mit Softclose-Auszügen", "kitchen", None, "oak", "island", "softclose"),
    _q("Küche Hamburg Altbau Eiche Kochinsel", "kitchen", None, "oak", "island", region="Hamburg"),
    # stairs
    _q("Angebot Wangentreppe Eiche mit Edelstahlgeländer, Altbau", "stairs", "stringer", "oak",
       "stainless_rail"),
    _q("Treppe aus Eiche mit Glasgeländer", "stairs", None, "oak", "glass_rail"),
    _q("Holztreppe aus Eichenholz, Geländer aus Glas", "stairs", None, "oak", "glass_rail"),
    _q("Wendeltreppe Buche für den Dachboden", "stairs", "spiral", "beech"),
    _q("Faltwerktreppe Esche mit LED-Beleuchtung in den Stufen", "stairs", "folded", "ash", "led_steps"),
    _q("Bolzentreppe Nussbaum ohne Setzstufen, Brüstung aus Glas", "stairs", "bolted", "walnut",
       "glass_rail"),
    _q("Halbgewendelte Treppe mit Zwischenpodest, Kiefer", "stairs", "half_turn", "pine", "landing"),
    _q("Treppe renovieren: rutschfeste Stufen und Handlauf auf beiden Seiten", "stairs", None, None,
       "anti_slip", "two_rails"),
    _q("Altbautreppe mit gedrechselten Geländerstäben nachbauen", "stairs", None, None, "turned"),
    _q("leise Treppe mit Trittschalldämmung für ein Mehrfamilienhaus", "stairs", None, None,
       "impact_sound"),
    _q("floating staircase in oak with a glass balustrade", "stairs", "floating", "oak", "glass_rail"),
    _q("Spindeltreppe Lärche mit Edelstahl-Handlauf", "stairs", "spiral", "larch", "stainless_rail"),
    _q("Treppe in Bayern aus Eiche", "stairs", None, "oak", region="Bayern"),
    # wardrobe
    _q("Einbauschrank Dachschräge mit Schiebetüren", "wardrobe", "eaves", None, "sliding"),
    _q("Begehbarer Kleiderschrank mit Beleuchtung innen und Schuhregal", "wardrobe", "walk_in", None,
       "interior_light", "shoe_rack"),
    _q("Kleiderschrank nach Maß Eiche mit Spiegeltüren", "wardrobe", "bespoke_wardrobe", "oak", "mirror"),
    _q("Schrank unter der Schräge mit Kniestock-Schubladen, Fichte", "wardrobe", "eaves", "spruce",
       "knee_wall"),
    _q("Nischenschrank Kiefer mit Kleiderlift", "wardrobe", "alcove", "pine", "clothes_lift"),
    _q("Ankleide mit Hosenauszug und Softclose-Schubladen", "wardrobe", "walk_in", None, "trousers",
       "softclose"),
    _q("Einbauschrank Ahorn, grifflose Fronten mit Grifffräsung", "wardrobe", "built_in", "maple", "grip"),
    _q("walk-in wardrobe with mirrored doors and lighting inside", "wardrobe", "walk_in", None, "mirror",
       "interior_light"),
    _q("Kleiderschrank aus Zirbenholz fürs Schlafzimmer", "wardrobe", None, "stone_pine"),
    _q("Dachschrägenschrank in Berlin mit Schiebetüren", "wardrobe", "eaves", None, "sliding",
       region="Berlin"),
    # flooring
    _q("Eichendielen mit Fußbodenheizung, geölt", "flooring", None, "oak", "floor_heating", "oiled"),
    _q("Fischgrätparkett Eiche im Altbau, alten Boden aufarbeiten", "flooring", "herringbone", "oak",
       "restoration"),
    _q("Terrasse aus Lärche mit unsichtbarer Befestigung", "flooring", "deck", "larch", "hidden_fixing"),
    _q("Landhausdielen Esche schwimmend verlegt mit Trittschalldämmung", "flooring", "wide_planks", "ash",
       "floating_laid", "impact_sound"),
    _q("Dielenboden Kiefer abschleifen und neu ölen", "flooring", "planks", "pine", "restoration", "oiled"),
    _q("Parkett neu verlegen mit Sockelleisten, ca. 60 m²", "flooring", None, None, "skirting"),
    _q("Holzterrasse für die Dachterrasse", "flooring", "deck"),
    _q("wide plank oak floor with underfloor heating", "flooring", "wide_planks", "oak", "floor_heating"),
    # windows
    _q("Buche Dreifachverglasung", "windows", None, "beech", "triple"),
    _q("Kastenfenster im Altbau restaurieren, mit historischen Sprossen", "windows", "box_window", None,
       "glazing_bars"),
    _q("Holzfenster Kiefer weiß lackiert mit Insektenschutz", "windows", "timber_window", "pine",
       "white_paint", "insect"),
    _q("Holz-Alu-Fenster mit RC2 und 3-fach Glas", "windows", "alu_clad", None, "rc2", "triple"),
    _q("Fenster Lärche mit Wetterschenkel und neuen Fugen", "windows", None, "larch", "weather_bar",
       "joints"),
    _q("Verbundfenster Eiche erneuern", "windows", "coupled", "oak"),
    _q("sash windows with draught-proofing", "windows", "sash", None, "draught"),
    _q("einbruchsichere Fenster fürs Erdgeschoss, Dreifachverglasung", "windows", None, None, "rc2",
       "triple"),
    # furniture
    _q("Esstisch Nussbaum mit Baumkante und Stahlgestell", "furniture", "table", "walnut", "live_edge",
       "steel_frame"),
    _q("Schreibtisch Eiche mit Kabelkanal", "furniture", "desk", "oak", "cables"),
    _q("Sideboard grifflos mit Push-to-open, Esche", "furniture", "sideboard", "ash", "push_open"),
    _q("Bücherregal nach Maß für eine Altbaunische", "furniture", "bookcase", None, "niche"),
    _q("Kommode mit gezinkten Schubladen aus Kirschbaum", "furniture", "sideboard", "cherry", "dovetail"),
    _q("Garderobe für den Flur, wandhängend, Eiche", "furniture", "coat_stand", "oak", "wall_hung"),
    _q("Sitzbank Zirbe geölt", "furniture", "bench", "stone_pine", "oiled"),
    _q("live edge walnut dining table", "furniture", "table", "walnut", "live_edge"),
    _q("Schreibtisch wandhängend mit verdeckter Kabelführung", "furniture", "desk", None, "wall_hung",
       "cables"),
    _q("Eichentisch mit Stahlbeinen bis 5000 Euro", "furniture", "table", "oak", "steel_frame",
       price=(0, 5_000)),
)
