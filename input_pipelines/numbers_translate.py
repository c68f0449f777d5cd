"""`jaxperf_numbers_translate`: a tiny real English->German corpus that needs no download.

Numbers and dates written out by num2words in both languages, and short perfect-tense
sentences whose German word order differs from the English ("I saw twelve cats." -> "Ich habe
zwölf Katzen gesehen."). It is stored exactly like tfds's WMT datasets (features
`Translation(languages=("de", "en"))`, splits `train` and `test`), so the tiny presets and the
tests read it through the same code as the MLPerf Transformer benchmark.

`pairs(split)` is the corpus itself, also used by tools.make_tiny_wmt. It is generated from a
fixed seed with `random.Random.random()`, whose sequence Python guarantees across versions and
machines, so every machine builds the same corpus.

Importing this module registers the builder with tfds (`tfds.builder(NAME)`), so it imports
tensorflow_datasets at top level: import it only on real-data code paths.
"""

from __future__ import annotations

import argparse
import functools
import random
from typing import ClassVar

from num2words import num2words

from common.errors import UserError
from input_pipelines import tfds_common

_, tfds = tfds_common.tf_modules()  # TensorFlow imported there, quietly

NAME = "jaxperf_numbers_translate"
TRAIN_EXAMPLES = 20_000
TEST_EXAMPLES = 500
_SEED = 20140
# num2words spells the year 1000..1099 and 100..199 "eintausend..." / "einshundert" in
# German; from 1100 to 2099 both languages read years the way people say them.
_YEARS = (1100, 2100)

_MONTHS = (
    ("January", "Januar", 31), ("February", "Februar", 28), ("March", "März", 31),
    ("April", "April", 30), ("May", "Mai", 31), ("June", "Juni", 30), ("July", "Juli", 31),
    ("August", "August", 31), ("September", "September", 30), ("October", "Oktober", 31),
    ("November", "November", 30), ("December", "Dezember", 31),
)
# (English, German, German auxiliary of the perfect tense).
_SUBJECTS = (
    ("I", "Ich", "habe"), ("we", "Wir", "haben"), ("they", "Sie", "haben"),
    ("he", "Er", "hat"), ("she", "Sie", "hat"), ("Anna", "Anna", "hat"),
    ("my brother", "Mein Bruder", "hat"), ("my sister", "Meine Schwester", "hat"),
    ("the children", "Die Kinder", "haben"), ("our neighbours", "Unsere Nachbarn", "haben"),
)
# Plurals only: counts start at two, so no article or adjective has to agree with a gender.
_NOUNS = (
    ("cats", "Katzen"), ("dogs", "Hunde"), ("books", "Bücher"), ("apples", "Äpfel"),
    ("houses", "Häuser"), ("cars", "Autos"), ("birds", "Vögel"), ("letters", "Briefe"),
    ("chairs", "Stühle"), ("trees", "Bäume"), ("flowers", "Blumen"), ("bottles", "Flaschen"),
)
_VERBS = (
    ("saw", "gesehen"), ("bought", "gekauft"), ("found", "gefunden"), ("sold", "verkauft"),
    ("counted", "gezählt"), ("lost", "verloren"), ("painted", "gemalt"),
)
# German puts time adverbials between the auxiliary and the object.
_TIMES = (
    ("yesterday", "gestern"), ("today", "heute"), ("last week", "letzte Woche"),
    ("last year", "letztes Jahr"),
)


@functools.cache
def _words(number: int, lang: str, to: str = "cardinal") -> str:
    # Cached: num2words takes ~0.1 ms a call and the same small numbers recur constantly.
    return num2words(number, lang=lang, to=to)


def _pick(rng: random.Random, options):
    # int(random() * n) rather than rng.choice: only random() is guaranteed reproducible.
    return options[int(rng.random() * len(options))]


def _number(rng: random.Random) -> tuple[str, str]:
    top = _pick(rng, (100, 10_000, 10_000, 1_000_000))
    n = int(rng.random() * top)
    return _words(n, "en"), _words(n, "de")


def _date(rng: random.Random, dative: bool) -> tuple[str, str]:
    """("on the fifth of May [year]", "am fünften Mai [Jahr]"), or nominative without "on"."""
    month_en, month_de, days = _pick(rng, _MONTHS)
    day = 1 + int(rng.random() * days)
    ordinal_en, ordinal_de = _words(day, "en", "ordinal"), _words(day, "de", "ordinal")
    if dative:  # "am" + weak adjective ending: erste -> ersten
        en, de = f"on the {ordinal_en} of {month_en}", f"am {ordinal_de}n {month_de}"
    else:
        en, de = f"the {ordinal_en} of {month_en}", f"der {ordinal_de} {month_de}"
    if rng.random() < 0.5:
        year = _YEARS[0] + int(rng.random() * (_YEARS[1] - _YEARS[0]))
        en, de = f"{en} {_words(year, 'en', 'year')}", f"{de} {_words(year, 'de', 'year')}"
    return en, de


def _count(rng: random.Random) -> int:
    """Mostly small counts; never 1 or x01 ("hunderteins Katzen" would need "hundertein")."""
    while True:
        n = 2 + int(rng.random() * 19) if rng.random() < 0.6 else 2 + int(rng.random() * 998)
        if n % 100 != 1:
            return n


def _sentence(rng: random.Random) -> tuple[str, str]:
    subject_en, subject_de, auxiliary = _pick(rng, _SUBJECTS)
    noun_en, noun_de = _pick(rng, _NOUNS)
    verb_en, participle = _pick(rng, _VERBS)
    n = _count(rng)
    when = rng.random()
    if when < 0.4:
        time_en, time_de = "", ""
    elif when < 0.7:
        time_en, time_de = _pick(rng, _TIMES)
    else:
        time_en, time_de = _date(rng, dative=True)
    en = " ".join(w for w in (subject_en, verb_en, _words(n, "en"), noun_en, time_en) if w)
    de = " ".join(
        w for w in (subject_de, auxiliary, time_de, _words(n, "de"), noun_de, participle) if w
    )
    return en[0].upper() + en[1:] + ".", de + "."


def _pair(rng: random.Random) -> tuple[str, str]:
    kind = rng.random()
    if kind < 0.25:
        return _number(rng)
    if kind < 0.45:
        return _date(rng, dative=rng.random() < 0.7)
    return _sentence(rng)


@functools.cache
def _corpus() -> dict[str, tuple[tuple[str, str], ...]]:
    rng = random.Random(_SEED)
    seen_en, seen_de, unique = set(), set(), []
    while len(unique) < TEST_EXAMPLES + TRAIN_EXAMPLES:
        en, de = _pair(rng)
        # Unique on both sides, so no test sentence (in either language) is in train.
        if en not in seen_en and de not in seen_de:
            seen_en.add(en)
            seen_de.add(de)
            unique.append((en, de))
    return {"test": tuple(unique[:TEST_EXAMPLES]), "train": tuple(unique[TEST_EXAMPLES:])}


def pairs(split: str) -> list[tuple[str, str]]:
    """The (English, German) pairs of `split` ('train' or 'test'), the same on every machine."""
    corpus = _corpus()
    if split not in corpus:
        raise UserError(f"{NAME} has no split {split!r}; use one of {sorted(corpus)}")
    return list(corpus[split])


class JaxperfNumbersTranslate(tfds.core.GeneratorBasedBuilder):
    """Numbers, dates and short sentences, English -> German, stored like WMT."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": f"First release: {TRAIN_EXAMPLES} train / {TEST_EXAMPLES} test pairs."
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Numbers, dates and short sentences written out with num2words.",
            features=tfds.features.Translation(languages=("de", "en")),
            supervised_keys=("en", "de"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # generated, nothing to download
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str):
        for i, (en, de) in enumerate(pairs(split)):
            yield f"{split}_{i:05d}", {"en": en, "de": de}


def prepare(data_dir: str) -> tfds.core.DatasetBuilder:
    """Builds jaxperf_numbers_translate under data_dir unless it is already there; returns the
    builder. Idempotent and quick (a few seconds); prepare once before starting processes."""
    return tfds_common.prepare_builtin(JaxperfNumbersTranslate, NAME, data_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=f"Prepare {NAME} for --data_dir.")
    parser.add_argument("--data_dir", required=True, help="tfds data directory to build into")
    try:
        builder = prepare(parser.parse_args(argv).data_dir)
    except UserError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{NAME} ready in {builder.data_dir}")


if __name__ == "__main__":
    main()
