"""The judged vocabulary, part 1: project types, name variants ("items") and woods, each a
*concept* that the demo corpus writes in its own words (German ``de``, English ``en``) and that
queries may name in other words (``de_alt``, ``en_alt``).

Two corpus words share a concept only where they mean the same thing to a workshop
("Spindeltreppe" and "Spiral staircase"); near neighbours stay apart ("Küchenzeile" is one
row, a "Galley kitchen" two). A concept with no ``de`` words exists in the corpus only in
English (``birch_ply``, ``shaker``, ...): the German queries of class ``german_to_english``
name only such concepts. ``tests/unit/test_relevance.py`` checks that every word the demo
generator writes belongs to exactly one concept.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Concept:
    id: str
    kinds: tuple[str, ...]
    """The project types it belongs to (a feature may belong to two)."""
    de: tuple[str, ...] = ()
    """The corpus's own German words (features: as written after "mit")."""
    en: tuple[str, ...] = ()
    """The corpus's own English words (features: as written after "with")."""
    de_alt: tuple[str, ...] = ()
    """Other German words for queries (paraphrases, synonyms, compounds split or joined)."""
    en_alt: tuple[str, ...] = ()
    """Other English words for queries."""
    key: tuple[str, ...] = ()
    """Short German keyword forms (nominative), for two- and three-keyword queries."""


@dataclass(frozen=True)
class TypeWords:
    de: tuple[str, ...]
    """Generic German nouns for the type ("Treppe")."""
    de_alt: tuple[str, ...]
    """Synonyms and other nouns ("Stiege", "Holztreppe")."""
    en: tuple[str, ...]
    compound: tuple[str, ...]
    """Lower-case heads for wood compounds: "Eichen" + "treppe"."""


TYPES: dict[str, TypeWords] = {
    "kitchen": TypeWords(("Küche",), ("Kücheneinrichtung", "Küchenmöbel", "Küche nach Maß"),
                         ("kitchen", "kitchen units"), ("küche",)),
    "stairs": TypeWords(("Treppe",), ("Holztreppe", "Stiege", "Treppenaufgang", "Innentreppe"),
                        ("staircase", "stairs", "stairway"), ("treppe", "holztreppe")),
    "wardrobe": TypeWords(("Kleiderschrank", "Schrank"), ("Schranksystem", "Kleiderkasten",
                                                         "Stauraumschrank"),
                          ("wardrobe", "closet"), ("schrank", "kleiderschrank")),
    "flooring": TypeWords(("Holzboden", "Boden"), ("Fußboden", "Holzbodenbelag",
                                                   "Holzfußboden", "Parkettboden"),
                          ("wood flooring", "timber floor"), ("boden", "parkett")),
    "windows": TypeWords(("Fenster",), ("Fensterrahmen", "Fensterelemente", "neue Fenster"),
                         ("windows", "window frames"), ("fenster",)),
    "furniture": TypeWords(("Möbel",), ("Massivholzmöbel", "Möbelstück nach Maß"),
                           ("furniture", "bespoke furniture"), ()),
}

Item = Concept
ITEMS: tuple[Concept, ...] = (
    # kitchen
    Item("country", ("kitchen",), de=("Landhausküche",), de_alt=("Küche im Landhausstil", "Bauernküche"),
         en_alt=("country kitchen", "farmhouse kitchen")),
    Item("handleless", ("kitchen",), de=("Grifflose Küche",), en=("Handleless kitchen",),
         de_alt=("Küche ohne Griffe", "Küche mit grifflosen Fronten"), en_alt=("kitchen without handles",)),
    Item("living_kitchen", ("kitchen",), de=("Wohnküche",),
         de_alt=("offene Küche mit Essbereich", "zum Wohnraum offene Küche"),
         en_alt=("open-plan kitchen", "kitchen-diner")),
    Item("fitted_kitchen", ("kitchen",), de=("Einbauküche",), de_alt=("eingebaute Küche", "Küche eingebaut"),
         en_alt=("fitted kitchen", "built-in kitchen")),
    Item("kitchen_row", ("kitchen",), de=("Küchenzeile",), de_alt=("einzeilige Küche", "Küche an einer Wand"),
         en_alt=("single-wall kitchen", "one-wall kitchen")),
    Item("shaker", ("kitchen",), en=("Shaker kitchen",), de_alt=("Küche im Shaker-Stil", "Shakerküche"),
         en_alt=("shaker-style kitchen",)),
    Item("galley", ("kitchen",), en=("Galley kitchen",), de_alt=("zweizeilige Küche", "Gangküche"),
         en_alt=("two-row galley kitchen",)),
    # stairs
    Item("stringer", ("stairs",), de=("Wangentreppe",),
         de_alt=("Treppe mit eingestemmten Stufen", "Treppe mit seitlichen Wangen"),
         en_alt=("closed stringer staircase", "housed-string stair")),
    Item("folded", ("stairs",), de=("Faltwerktreppe",), de_alt=("gefaltete Treppe", "Treppe als Faltwerk"),
         en_alt=("folded plate staircase", "zigzag staircase")),
    Item("spiral", ("stairs",), de=("Spindeltreppe",), en=("Spiral staircase",),
         de_alt=("Wendeltreppe", "runde Treppe um eine Mittelsäule"),
         en_alt=("spiral stairs", "helical staircase")),
    Item("bolted", ("stairs",), de=("Bolzentreppe",),
         de_alt=("an der Wand verbolzte Treppe", "Treppe mit Stufen an Bolzen"),
         en_alt=("bolt-fixed staircase", "wall-bolted stairs")),
    Item("half_turn", ("stairs",), de=("Halbgewendelte Treppe",),
         de_alt=("U-förmige Treppe", "Treppe mit halber Wendelung"),
         en_alt=("half-turn staircase", "U-shaped staircase")),
    Item("floating", ("stairs",), en=("Floating staircase",),
         de_alt=("Kragarmtreppe", "schwebende Treppe", "freitragende Treppe"),
         en_alt=("cantilevered staircase",)),
    Item("cut_string", ("stairs",), en=("Cut-string staircase",),
         de_alt=("aufgesattelte Treppe", "Treppe mit aufgesattelten Stufen"), en_alt=("cut string stairs",)),
    # wardrobe
    Item("built_in", ("wardrobe",), de=("Einbauschrank",), en=("Built-in wardrobe",),
         de_alt=("eingebauter Schrank", "Wandschrank"), en_alt=("fitted wardrobe", "built-in closet")),
    Item("walk_in", ("wardrobe",), de=("Begehbarer Kleiderschrank",), en=("Walk-in wardrobe",),
         de_alt=("Ankleidezimmer", "Ankleide", "begehbarer Schrankraum"),
         en_alt=("walk-in closet", "dressing room")),
    Item("eaves", ("wardrobe",), de=("Dachschrägenschrank",),
         de_alt=("Schrank unter der Dachschräge", "Schrank für die Schräge"),
         en_alt=("eaves wardrobe", "wardrobe under a sloping ceiling")),
    Item("alcove", ("wardrobe",), de=("Nischenschrank",), en=("Alcove wardrobe",),
         de_alt=("Schrank in der Nische", "Schrank für eine Wandnische"),
         en_alt=("alcove cupboard", "niche wardrobe")),
    Item("bespoke_wardrobe", ("wardrobe",), de=("Kleiderschrank nach Maß",),
         de_alt=("maßgefertigter Kleiderschrank", "Maßkleiderschrank"),
         en_alt=("bespoke wardrobe", "made-to-measure wardrobe")),
    # flooring
    Item("planks", ("flooring",), de=("Dielenboden",), de_alt=("Holzdielen", "Bretterboden"),
         en_alt=("plank flooring", "floorboards")),
    Item("herringbone", ("flooring",), de=("Fischgrätparkett",), en=("Herringbone parquet",),
         de_alt=("Parkett im Fischgrätmuster", "Fischgrät-Verlegung"),
         en_alt=("herringbone floor", "herringbone wood floor")),
    Item("deck", ("flooring",), de=("Terrassendeck",), en=("Roof terrace deck",),
         de_alt=("Holzterrasse", "Terrassenbelag aus Holz", "Terrassendielen"),
         en_alt=("decking", "wooden terrace")),
    Item("wide_planks", ("flooring",), de=("Landhausdielen",), en=("Wide plank floor",),
         de_alt=("breite Dielen", "Breitdielen"), en_alt=("wide boards", "wide floorboards")),
    # windows
    Item("timber_window", ("windows",), de=("Holzfenster",), en=("Timber casement windows",),
         de_alt=("Fenster aus Massivholz", "Massivholzfenster"),
         en_alt=("wooden windows", "wood-framed windows")),
    Item("box_window", ("windows",), de=("Kastenfenster",),
         de_alt=("Kastendoppelfenster", "Doppelfenster mit Kasten"),
         en_alt=("box-type double windows", "box windows")),
    Item("alu_clad", ("windows",), de=("Holz-Alu-Fenster",),
         de_alt=("Holz-Aluminium-Fenster", "Fenster mit Alu-Deckschale"),
         en_alt=("wood-aluminium windows", "alu-clad timber windows")),
    Item("coupled", ("windows",), de=("Verbundfenster",),
         de_alt=("Fenster mit verbundenen Flügeln", "Doppelflügel im Verbund"),
         en_alt=("coupled windows", "composite double windows")),
    Item("sash", ("windows",), en=("Sash window restoration",),
         de_alt=("Schiebefenster", "Vertikalschiebefenster", "englische Schiebefenster"),
         en_alt=("sash windows", "box sash windows")),
    # furniture
    Item("table", ("furniture",), de=("Esstisch",), en=("Dining table",),
         de_alt=("Tisch zum Essen", "Küchentisch", "Tafel für acht Personen"),
         en_alt=("kitchen table", "dinner table")),
    Item("bookcase", ("furniture",), de=("Bücherregal",), en=("Bookcase",),
         de_alt=("Bücherwand", "Regal für Bücher"),
         en_alt=("bookshelf", "book shelves")),
    Item("sideboard", ("furniture",), de=("Sideboard",), en=("Sideboard",),
         de_alt=("Anrichte", "Kommode", "Lowboard"),
         en_alt=("buffet cabinet", "credenza")),
    Item("desk", ("furniture",), de=("Schreibtisch",), en=("Desk",),
         de_alt=("Arbeitstisch", "Bürotisch", "Sekretär"),
         en_alt=("writing desk", "home office desk")),
    Item("coat_stand", ("furniture",), de=("Garderobe",), de_alt=("Flurgarderobe", "Garderobenmöbel"),
         en_alt=("coat rack", "hallway coat stand")),
    Item("bench", ("furniture",), de=("Sitzbank",), de_alt=("Holzbank", "Eckbank", "Bank zum Sitzen"),
         en_alt=("bench", "seating bench")),
)


@dataclass(frozen=True)
class Wood:
    id: str
    de: str | None
    """The corpus's German word ("Eiche"), None where only English projects have it."""
    en: str | None
    """The corpus's English word ("oak")."""
    holz: str
    """The German material noun ("Eichenholz")."""
    prefix: str
    """The German compound head ("Eichen", for "Eichentreppe")."""
    en_alt: str
    """The English query word ("oak", "beech")."""


WOODS: tuple[Wood, ...] = (
    Wood("oak", "Eiche", "oak", "Eichenholz", "Eichen", "oak"),
    Wood("beech", "Buche", None, "Buchenholz", "Buchen", "beech"),
    Wood("walnut", "Nussbaum", "walnut", "Walnussholz", "Nussbaum", "walnut"),
    Wood("pine", "Kiefer", None, "Kiefernholz", "Kiefern", "pine"),
    Wood("spruce", "Fichte", None, "Fichtenholz", "Fichten", "spruce"),
    Wood("larch", "Lärche", None, "Lärchenholz", "Lärchen", "larch"),
    Wood("ash", "Esche", "ash", "Eschenholz", "Eschen", "ash"),
    Wood("maple", "Ahorn", "maple", "Ahornholz", "Ahorn", "maple"),
    Wood("cherry", "Kirsche", "cherry", "Kirschbaumholz", "Kirschbaum", "cherry"),
    Wood("stone_pine", "Zirbe", None, "Zirbenholz", "Zirben", "Swiss stone pine"),
    Wood("birch_ply", None, "birch plywood", "Birkensperrholz", "Birkensperrholz", "birch ply"),
)

WOOD_BY_ID = {w.id: w for w in WOODS}
WOOD_BY_WORD = {word: w.id for w in WOODS for word in (w.de, w.en) if word is not None}
"""The corpus's ``wood_type`` (either language) -> wood concept."""
ITEM_BY_ID = {c.id: c for c in ITEMS}
ITEM_BY_NAME = {(kind, name): c.id for c in ITEMS for kind in c.kinds for name in (*c.de, *c.en)}
"""(project type, the corpus's name variant) -> item concept."""
