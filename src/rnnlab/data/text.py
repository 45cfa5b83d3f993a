"""How review text becomes words and token ids: one definition, in two equivalent forms.

- `tokenizer.json` (HF `tokenizers`) is the artifact: its normalizer and pre-tokenizer hold the rules, so
  predict-time text is encoded exactly as training text was, with nothing but that file.
- `split_words` is the same rules in plain Python, used by `prepare` for bulk work: the HF encoder is too
  slow per thread for `prepare`'s time budget (`python -m rnnlab.bench.prepare` measures it).
  `prepare` re-encodes the validation split with the HF tokenizer and fails if the two ever disagree.

The rules: drop the `<br />` markup IMDB reviews carry, NFKC-normalise Unicode, lower-case, split on
whitespace, and make every punctuation character a token of its own.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel

PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
BREAK_TAG = r"<br\s*/?>"
_BREAK_TAG = re.compile(BREAK_TAG)


def split_words(text: str) -> list[str]:
    """The words of `text` under the tokenizer's rules (see module docstring)."""
    text = unicodedata.normalize("NFKC", _BREAK_TAG.sub(" ", text)).lower()
    for mark in string.punctuation:  # str.replace per mark is faster than one regex substitution
        if mark in text:
            text = text.replace(mark, f" {mark} ")
    if not text.isascii():
        for char in set(text):
            if char > "\x7f" and unicodedata.category(char).startswith("P"):
                text = text.replace(char, f" {char} ")
    return text.split()


def build_vocab(counts: Mapping[str, int], vocab_size: int, min_frequency: int) -> dict[str, int]:
    """Token ids: the specials, then the most frequent words (ties alphabetical) seen >= `min_frequency` times."""
    frequent = sorted((w for w, c in counts.items() if c >= min_frequency), key=lambda w: (-counts[w], w))
    words = [PAD_TOKEN, UNK_TOKEN, *frequent[: vocab_size - 2]]
    return {word: index for index, word in enumerate(words)}


def make_tokenizer(vocab: dict[str, int]) -> Tokenizer:
    """An HF word-level tokenizer with `vocab` whose rules match `split_words`."""
    tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Replace(Regex(BREAK_TAG), " "), normalizers.NFKC(), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    return tokenizer
