"""Build a WordPiece tokenizer from text: the demo's stand-in for BioBERT's and the uncased vocabularies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from transformers import BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_pieces(word: str) -> Iterable[str]:
    """Candidate pieces of a word: its prefixes and its `##` suffixes (2-8 characters)."""
    for size in range(2, min(len(word), 9)):
        yield word[:size]
        yield f"##{word[-size:]}"


def wordpiece_vocab(texts: Iterable[str], lowercase: bool, vocab_size: int) -> list[str]:
    """Special tokens, every character (alone and as a `##` continuation), then the most frequent whole words and
    word pieces (prefixes, `##` suffixes): unseen words still split into meaningful pieces.

    Built here rather than with the `tokenizers` trainer, whose vocabulary changes from run to run on the same
    text (hash-map order): the demo must give the same models and scores on every run.
    """
    normalizer = BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    split = BertPreTokenizer()
    counts = Counter(word for text in texts for word, _ in split.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({char for word in counts for char in word})
    vocab = SPECIAL_TOKENS + chars + [f"##{char}" for char in chars]
    pieces = Counter()
    for word, count in counts.items():
        for piece in word_pieces(word):
            pieces[piece] += count
    words = ranked(counts, exclude=set(vocab))
    budget = max(0, vocab_size - len(vocab))
    # Half the budget for whole words, the rest for pieces; whichever runs short leaves its room to the other.
    top_pieces = ranked(pieces, exclude=set(vocab) | set(words))[: budget - min(len(words), budget // 2)]
    return vocab + words[: budget - len(top_pieces)] + top_pieces


def ranked(counts: Counter, exclude: set[str]) -> list[str]:
    """Most frequent first, ties in alphabetical order (so the order never depends on hashing)."""
    return [w for w in sorted(counts, key=lambda w: (-counts[w], w)) if w not in exclude]


def build_wordpiece(texts: Iterable[str], out_dir: str | Path, lowercase: bool, vocab_size: int = 2000):
    """Write a deterministic WordPiece vocabulary for `texts` and save a Hugging Face tokenizer to `out_dir`.

    Goes through vocab.txt + `BertTokenizer(vocab=...)`: in transformers 5,
    `BertTokenizerFast(vocab_file=...)` silently builds a 5-token vocabulary.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.txt").write_text("\n".join(wordpiece_vocab(texts, lowercase, vocab_size)) + "\n")
    tokenizer = BertTokenizer(vocab=str(out_dir / "vocab.txt"), do_lower_case=lowercase)
    tokenizer.save_pretrained(out_dir)
    return tokenizer
