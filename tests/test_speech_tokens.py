"""The speech vocabulary: normalisation, round trips, blank last, determinism, bad files."""

import random

import numpy as np
import pytest
import sentencepiece as spm
from num2words import num2words

from common.errors import UserError
from input_pipelines import speech_tokens
from input_pipelines.speech_tokens import normalize


def _number_transcripts(count: int = 400) -> list[str]:
    """Upper-case transcripts of numbers, as LibriSpeech writes its text: digit strings
    ("THREE SEVEN ONE") and numbers read out ("ONE HUNDRED AND FOUR", "TWENTY-FIVE")."""
    rng = random.Random(7)
    texts = []
    for _ in range(count // 2):
        texts.append(" ".join(num2words(rng.randrange(10)) for _ in range(rng.randrange(1, 5))))
        texts.append(num2words(rng.randrange(1000)))
    return [t.upper() for t in texts]


@pytest.fixture(scope="module")
def numbers(tmp_path_factory):
    texts = _number_transcripts()
    path = str(tmp_path_factory.mktemp("vocab") / "numbers.model")
    return texts, speech_tokens.build(texts, 32, path)


def test_normalize():
    assert normalize("  HE SAID, \"DON'T\"\tGO--NOW!\n") == "he said don't go now"
    assert normalize("ONE HUNDRED AND FOUR") == "one hundred and four"
    assert normalize("Café 42 naïve") == "caf nave"  # what is not a-z goes
    assert normalize("...") == ""


def test_round_trip_and_blank_last(numbers):
    texts, vocab = numbers
    assert (vocab.size, vocab.blank, vocab.num_classes) == (32, 32, 33)
    ids = vocab.encode(texts)
    assert all(0 <= i < vocab.size for row in ids for i in row)
    assert [vocab.decode(row) for row in ids] == [normalize(t) for t in texts]
    hyphenated = next(i for i, t in enumerate(texts) if "-" in t)  # e.g. SEVENTY-FOUR
    assert vocab.decode(ids[hyphenated]) == texts[hyphenated].lower().replace("-", " ")
    # Pieces, not letters: the model learnt multi-letter pieces from the corpus.
    assert sum(map(len, ids)) < 0.6 * sum(len(normalize(t).replace(" ", "")) for t in texts)
    # A padded row of decoded tokens (blank-padded, or -1) decodes to its text; blank alone
    # is nothing.
    row = ids[0]
    padded = np.array(row + [vocab.blank] * 5)
    assert vocab.decode(padded) == normalize(texts[0])
    assert vocab.decode([vocab.blank, *row, -1, vocab.blank]) == normalize(texts[0])
    assert vocab.decode([vocab.blank] * 4) == ""
    assert vocab.decode_batch([padded, [vocab.blank]]) == [normalize(texts[0]), ""]


def test_build_is_deterministic(numbers, tmp_path):
    texts, vocab = numbers
    again = speech_tokens.build(list(texts), 32, str(tmp_path / "again.model"))
    with open(vocab.path, "rb") as a, open(again.path, "rb") as b:
        assert a.read() == b.read()
    assert again.fingerprint == vocab.fingerprint
    # The check can fail: another size is another model.
    other = speech_tokens.build(texts, 40, str(tmp_path / "other.model"))
    assert other.fingerprint != vocab.fingerprint and other.num_classes == 41
    assert speech_tokens.load(other.path).encode(["twenty five"]) == other.encode(["TWENTY-FIVE"])


def test_tiny_sizes_and_their_bounds(tmp_path):
    texts = _number_transcripts()
    # 20 letters + space + unk: the smallest vocabulary these transcripts allow.
    smallest = speech_tokens.build(texts, 24, str(tmp_path / "24.model"))
    assert smallest.size == 24
    assert smallest.decode(smallest.encode(texts[:1])[0]) == normalize(texts[0])
    with pytest.raises(UserError, match=r"smaller than required_chars.*--config.vocab_size"):
        speech_tokens.build(texts, 16, str(tmp_path / "16.model"))
    with pytest.raises(UserError, match=r"set it to a value <= \d+"):
        speech_tokens.build(texts, 500, str(tmp_path / "500.model"))
    assert not list(tmp_path.glob("16.model*")) and not list(tmp_path.glob("500.model*"))
    with pytest.raises(UserError, match="no transcript"):
        speech_tokens.build(["...", ""], 24, str(tmp_path / "none.model"))


def test_bad_files_are_one_line_errors(numbers, tmp_path):
    texts, _ = numbers
    missing = str(tmp_path / "missing.model")
    with pytest.raises(UserError, match="does not exist; .*leave it empty to build one"):
        speech_tokens.load(missing)
    (tmp_path / "empty.model").write_bytes(b"")
    (tmp_path / "corrupt.model").write_bytes(b"not a sentencepiece model")
    for name, problem in (("empty", "is empty"), ("corrupt", "is not a sentencepiece model")):
        with pytest.raises(UserError, match=f"{problem}.*leave it empty") as caught:
            speech_tokens.load(str(tmp_path / f"{name}.model"))
        assert "\n" not in str(caught.value)
    # sentencepiece's own defaults (unk 0, bos 1, eos 2): two ids would not be outputs.
    defaults = str(tmp_path / "defaults")
    spm.SentencePieceTrainer.train(sentence_iterator=iter([normalize(t) for t in texts]),
                                   model_prefix=defaults, vocab_size=32, minloglevel=2)
    with pytest.raises(UserError, match=r"ids \(0, 1, 2, -1\).*vocab_path empty"):
        speech_tokens.load(defaults + ".model")
