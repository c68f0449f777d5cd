"""The tiny BERT corpus's text: biographies and city articles about a small fixed world.

Every city has a country, a river, a population, a founding year and a festival; every
person has a birth date and city, a subject, a university and a death, and later sentences
repeat those facts, so masked words can be recovered from context or world knowledge (see
tiny_wiki, which turns these documents into the reference's pretraining examples). All
randomness comes from random.Random.random(), whose sequence Python guarantees across
versions.
"""

import functools
import random
from collections.abc import Sequence

# Each random stream's tag: seed * 10 + tag seeds it, so no two streams share a sequence.
STREAMS = dict(world=1, train_documents=2, eval_documents=3, train_examples=4,
                eval_examples=5)

_MALE = ("adam", "boris", "carlos", "daniel", "erik", "felix", "gustav", "hugo", "ivan",
         "jonas", "karl", "leon", "marco", "nils", "oscar", "pavel", "rafael", "stefan",
         "tomas", "viktor")
_FEMALE = ("alice", "beatrice", "clara", "dora", "elena", "fiona", "greta", "helena", "irene",
           "julia", "katrin", "lena", "maria", "nora", "olga", "paula", "rosa", "sofia",
           "teresa", "vera")
_SURNAMES = ("albers", "brandt", "castillo", "dvorak", "eriksen", "fischer", "garcia",
             "hansen", "ivanov", "jansen", "kowalski", "lindqvist", "moreau", "novak", "olsen",
             "petrov", "rossi", "santos", "tanaka", "varga", "weber", "bianchi", "costa",
             "duval", "keller", "horvat", "nowak", "silva", "berg", "lorenz")
# (city, country, river)
_CITIES = (
    ("lisbon", "portugal", "tagus"), ("porto", "portugal", "douro"),
    ("seville", "spain", "guadalquivir"), ("zaragoza", "spain", "ebro"),
    ("lyon", "france", "rhone"), ("nantes", "france", "loire"),
    ("cologne", "germany", "rhine"), ("dresden", "germany", "elbe"),
    ("turin", "italy", "po"), ("florence", "italy", "arno"),
    ("krakow", "poland", "vistula"), ("wroclaw", "poland", "oder"),
    ("prague", "bohemia", "vltava"), ("budapest", "hungary", "danube"),
    ("szeged", "hungary", "tisza"), ("uppsala", "sweden", "fyris"),
    ("bergen", "norway", "glomma"), ("leiden", "holland", "rhine"),
    ("riga", "latvia", "daugava"), ("kyoto", "japan", "kamo"),
)
_ADJECTIVES = {"portugal": "portuguese", "spain": "spanish", "france": "french",
               "germany": "german", "italy": "italian", "poland": "polish",
               "bohemia": "bohemian", "hungary": "hungarian", "sweden": "swedish",
               "norway": "norwegian", "holland": "dutch", "latvia": "latvian",
               "japan": "japanese"}
_SUBJECTS = (("physics", "physicist"), ("chemistry", "chemist"), ("biology", "biologist"),
             ("mathematics", "mathematician"), ("history", "historian"), ("music", "composer"),
             ("medicine", "doctor"), ("law", "lawyer"), ("architecture", "architect"),
             ("painting", "painter"), ("philosophy", "philosopher"),
             ("astronomy", "astronomer"), ("economics", "economist"), ("geology", "geologist"),
             ("poetry", "poet"))
_TRADES = ("baker", "teacher", "farmer", "sailor", "tailor", "merchant", "carpenter", "nurse",
           "miner", "clerk", "weaver", "printer")
_KNOWN_FOR = ("old bridges", "cathedral", "harbour", "markets", "gardens", "castle", "museums",
              "wine", "theatres", "libraries")
_FESTIVALS = ("music", "light", "flowers", "poetry", "boats", "bread", "lanterns", "theatre")
_MONTHS = (("january", 31), ("february", 28), ("march", 31), ("april", 30), ("may", 31),
           ("june", 30), ("july", 31), ("august", 31), ("september", 30), ("october", 31),
           ("november", 30), ("december", 31))


@functools.cache
def _words(number: int, to: str = "cardinal") -> str:
    from num2words import num2words

    return num2words(number, to=to)  # cached: ~0.1 ms a call, and numbers recur constantly


def pick(rng: random.Random, options: Sequence):
    # int(random() * n) rather than rng.choice: only random() is guaranteed reproducible.
    return options[int(rng.random() * len(options))]


def between(rng: random.Random, lo: int, hi: int) -> int:
    """An int in [lo, hi]."""
    return lo + int(rng.random() * (hi - lo + 1))


def shuffle(rng: random.Random, items: list) -> None:
    for i in range(len(items) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        items[i], items[j] = items[j], items[i]


@functools.cache
def _world(seed: int) -> tuple[dict, ...]:
    """The facts of every city, fixed by the seed and shared by all documents."""
    rng = random.Random(seed * 10 + STREAMS["world"])
    return tuple(dict(name=name, country=country, river=river, founded=between(rng, 1100, 1800),
                      population=between(rng, 40, 900) * 1000,
                      known_for=pick(rng, _KNOWN_FOR), festival=pick(rng, _FESTIVALS),
                      month=pick(rng, _MONTHS)[0])
                 for name, country, river in _CITIES)


def _city_article(rng: random.Random, city: dict) -> list[str]:
    name = city["name"]
    facts = [f"the river {city['river']} flows through {name}.",
             f"about {_words(city['population'])} people live in {name}.",
             f"{name} is known for its {city['known_for']}.",
             f"the university of {name} was founded in {_words(city['founded'], 'year')}.",
             f"every {city['month']} {name} holds a festival of {city['festival']}.",
             f"many visitors come to {name} to see its {city['known_for']}."]
    shuffle(rng, facts)
    return [f"{name} is a city in {city['country']}.", *facts[:between(rng, 3, len(facts))]]


def _biography(rng: random.Random, world: tuple[dict, ...]) -> list[str]:
    female = rng.random() < 0.5
    first, last = pick(rng, _FEMALE if female else _MALE), pick(rng, _SURNAMES)
    he, his = ("she", "her") if female else ("he", "his")
    home, study, death_city = pick(rng, world), pick(rng, world), pick(rng, world)
    subject, profession = pick(rng, _SUBJECTS)
    born, (month, days) = between(rng, 1800, 1920), pick(rng, _MONTHS)
    study_age, study_years = between(rng, 16, 24), between(rng, 2, 9)
    death_age = between(rng, 45, 94)
    year = functools.partial(_words, to="year")
    text = [f"{first} {last} was a {_ADJECTIVES[home['country']]} {profession}.",
            f"{he} was born on the {_words(between(rng, 1, days), 'ordinal')} of {month} "
            f"{year(born)} in {home['name']}, a city in {home['country']}."]
    if rng.random() < 0.6:
        text.append(f"{his} father was a {pick(rng, _TRADES)} and {his} mother was a "
                    f"{pick(rng, _TRADES)}.")
    text.append(f"at the age of {_words(study_age)}, {first} moved to {study['name']} to study "
                f"{subject} at the university of {study['name']}.")
    if rng.random() < 0.4:
        text.append(f"{study['name']} lies on the river {study['river']} in "
                    f"{study['country']}.")
    text.append(f"after {_words(study_years)} years in {study['name']}, {he} became a "
                f"{profession}.")
    if rng.random() < 0.6:
        spouse = pick(rng, _MALE if female else _FEMALE)
        married = born + study_age + study_years + between(rng, 0, 10)
        text.append(f"in {year(married)} {first} married {spouse} {pick(rng, _SURNAMES)}, a "
                    f"{pick(rng, _TRADES)} from {pick(rng, world)['name']}.")
        children = between(rng, 0, 6)
        text.append(f"{first} and {spouse} had {_words(children)} "
                    f"{'child' if children == 1 else 'children'}.")
    text.append(f"{first} wrote {_words(between(rng, 2, 40))} books about {subject}.")
    text.append(f"{first} {last} died in {death_city['name']} in {year(born + death_age)}, at "
                f"the age of {_words(death_age)}.")
    if rng.random() < 0.5:
        text.append(f"today {his} work on {subject} is still read in {home['country']}.")
    return text


def documents(count: int, seed: int, split: str) -> list[list[str]]:
    """`count` documents (lists of sentences) of "train" or "eval": the same world, but each
    split's people and articles drawn from its own stream."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    rng, world = random.Random(seed * 10 + STREAMS[f"{split}_documents"]), _world(seed)
    return [_city_article(rng, pick(rng, world)) if rng.random() < 0.2
            else _biography(rng, world) for _ in range(count)]
