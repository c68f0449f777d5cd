"""The built-in English->German numbers corpus: deterministic, disjoint splits, correct
German, prepared as a WMT-like tfds dataset."""


import collections
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from common.errors import UserError
from input_pipelines import numbers_translate as nt
from tests.helpers import one_line_error

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MONTHS_DE = "Januar|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember"


# The numbers corpus.


def _digest(pairs) -> str:
    return hashlib.sha256(repr(pairs).encode()).hexdigest()


def test_corpus_is_deterministic_and_disjoint():
    train, test = nt.pairs("train"), nt.pairs("test")
    assert (len(train), len(test)) == (nt.TRAIN_EXAMPLES, nt.TEST_EXAMPLES)
    for side in (0, 1):  # no test sentence, in either language, is in train
        assert not {p[side] for p in test} & {p[side] for p in train}
        assert len({p[side] for p in train + test}) == len(train + test)
    # Another interpreter, another hash seed: the same corpus.
    code = ("import hashlib\nfrom input_pipelines import numbers_translate as nt\n"
            "print(hashlib.sha256(repr((nt.pairs('train'), nt.pairs('test'))).encode())"
            ".hexdigest())")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONHASHSEED="123"), check=True)
    assert proc.stdout.strip() == _digest((train, test))
    with pytest.raises(UserError, match="no split 'validation'"):
        nt.pairs("validation")


def test_corpus_german_is_right():
    corpus = set(nt.pairs("train") + nt.pairs("test"))
    for pair in [
        ("twenty-one", "einundzwanzig"),
        ("three thousand, two hundred and twelve", "dreitausendzweihundertzwölf"),
        ("on the twenty-fifth of October eleven twenty-one",
         "am fünfundzwanzigsten Oktober elfhunderteinundzwanzig"),
        ("the first of April thirteen fifteen", "der erste April dreizehnhundertfünfzehn"),
        ("I bought three apples.", "Ich habe drei Äpfel gekauft."),
        ("My brother saw four dogs on the fourteenth of June.",
         "Mein Bruder hat am vierzehnten Juni vier Hunde gesehen."),
        ("We bought two hundred and twenty-seven books last year.",
         "Wir haben letztes Jahr zweihundertsiebenundzwanzig Bücher gekauft."),
    ]:
        assert pair in corpus
    auxiliaries = {"I": "Ich habe", "We": "Wir haben", "He": "Er hat", "She": "Sie hat"}
    kinds = collections.Counter()
    for en, de in corpus:
        assert len(en.split()) <= 25
        if en.endswith("."):  # a sentence: subject, auxiliary, ..., participle.
            kinds["sentence"] += 1
            assert de[0].isupper() and de.endswith(".") and de.count(".") == 1
            assert de.split()[-1][:-1].startswith(("ge", "ver")), de
            subject = en.split()[0]
            if subject in auxiliaries:
                assert de.startswith(auxiliaries[subject] + " "), (en, de)
        elif en.startswith("on the "):
            kinds["date"] += 1
            assert re.fullmatch(rf"am \w+ten ({MONTHS_DE})( \w+)?", de), de
        else:
            kinds["number" if " of " not in en else "nominative date"] += 1
    assert min(kinds.values()) > 1000, kinds


def test_prepare_makes_a_wmt_like_dataset(numbers_dir, numbers, capsys):
    info = numbers.info
    assert isinstance(info.features, tfds.features.Translation)
    assert tuple(info.features.languages) == ("de", "en")
    assert {n: s.num_examples for n, s in info.splits.items()} == {"train": 20000, "test": 500}
    assert nt.prepare(numbers_dir).data_dir == numbers.data_dir  # idempotent
    nt.main(["--data_dir", numbers_dir])
    assert f"{nt.NAME} ready in {numbers.data_dir}" in capsys.readouterr().out
    example = next(iter(tfds.as_numpy(numbers.as_dataset(split="test").take(1))))
    assert (example["en"].decode(), example["de"].decode()) in nt.pairs("test")


def test_prepare_unreadable_data(numbers_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(numbers_dir, copy)
    (info,) = glob.glob(f"{copy}/{nt.NAME}/*/dataset_info.json")
    with open(info, "w") as f:
        f.write("{not json")
    one_line_error(lambda: nt.prepare(str(copy)), f"unreadable {nt.NAME}", "prepare it again")

