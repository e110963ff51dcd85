"""Sentences -> model windows and back: labels aligned to word pieces, and sentences longer than the model's window
cut at word boundaries, re-joined after prediction, so nothing is truncated.

Words the tokenizer turns into zero pieces (a lone zero-width or control character) keep their own index, so they
cannot shift later labels (the official code's bug); at word level they are predicted "O".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import IGNORE_INDEX
from ..io import InputError
from .data import Sentence

# Which pieces of a word carry its label in training (label_mode_train): every piece, as the official code, or only
# the first, the others IGNORE_INDEX (the BioBERT/BLURB convention).
LABEL_MODES = ("every_piece", "first_piece")


def word_id_array(word_ids) -> np.ndarray:
    """A tokenizer's word_ids() (None for special tokens) as an int array with -1 for special tokens."""
    return np.array([-1 if w is None else w for w in word_ids], dtype=np.int64)


def first_piece_mask(word_ids: np.ndarray) -> np.ndarray:
    """True at the first sub-token of every word (word_ids with -1 for special tokens)."""
    previous = np.concatenate(([-1], word_ids[:-1]))
    return (word_ids >= 0) & (word_ids != previous)


def align_labels(word_ids, word_labels, mode: str) -> np.ndarray:
    """Per-sub-token training labels from per-word label ids.

    word_ids: per sub-token the index of its word, None (or -1) for special tokens.
    mode "every_piece": every piece gets its word's label (a B word gives B, B, B as in the official code);
    mode "first_piece": only the first piece, the rest IGNORE_INDEX. Special tokens are always IGNORE_INDEX.
    Labels are looked up by word index, so a word with no pieces is skipped without shifting the words after it.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {mode!r}; expected one of {LABEL_MODES}")
    word_ids = word_id_array(word_ids) if not isinstance(word_ids, np.ndarray) else word_ids
    keep = word_ids >= 0 if mode == "every_piece" else first_piece_mask(word_ids)
    labels = np.full(len(word_ids), IGNORE_INDEX, dtype=np.int64)
    labels[keep] = np.asarray(word_labels, dtype=np.int64)[word_ids[keep]]
    return labels


def words_from_pieces(word_ids, piece_tags, n_words: int, fill: str = "O") -> list[str]:
    """Word-level tags from per-sub-token tags: each word takes its first piece's tag; words without
    pieces get `fill`."""
    word_ids = np.asarray(word_ids)
    first = first_piece_mask(word_ids)
    words = np.full(n_words, fill, dtype=object)
    words[word_ids[first]] = np.asarray(piece_tags, dtype=object)[first]
    return words.tolist()


@dataclass
class EncodedSplit:
    """One split as model windows, plus what is needed to map window predictions back to sentences."""

    sentences: list[Sentence]
    input_ids: list[np.ndarray]  # one per window, special tokens included
    word_ids: list[np.ndarray]  # per window position: word index within the SENTENCE, -1 for special tokens
    labels: list[np.ndarray]  # training targets per window position (IGNORE_INDEX where not trained)
    window_sentence: np.ndarray  # sentence index of every window, in sentence order
    split_sentences: int  # sentences that needed more than one window


class UncuttableWord(ValueError):
    """A word with more pieces than a window holds: no cut between words makes it fit."""

    def __init__(self, word: int, count: int, budget: int):
        super().__init__(f"word {word + 1} alone has {count} sub-tokens, more than the {budget} that fit")
        self.word = word


def window_word_ranges(piece_counts, budget: int) -> list[tuple[int, int]]:
    """Greedy [start, end) word ranges whose piece counts each sum to at most `budget`."""
    ranges, start, used = [], 0, 0
    for word, count in enumerate(piece_counts):
        if count > budget:
            raise UncuttableWord(word, count, budget)
        if used + count > budget:
            ranges.append((start, word))
            start, used = word, 0
        used += count
    ranges.append((start, len(piece_counts)))
    return ranges


def encode_split(
    tokenizer, sentences, label2id: dict, max_length: int, label_mode: str, source, first_number: int = 1
) -> EncodedSplit:
    """Tokenize pre-split words; sentences over max_length sub-tokens become several windows. `source` and
    `first_number` (the number of the split's first sentence in that file) name a sentence that cannot be cut."""
    encoded = tokenizer([tokens for tokens, _ in sentences], is_split_into_words=True, verbose=False)
    input_ids, word_ids, labels, window_sentence, split_sentences = [], [], [], [], 0
    for index, (tokens, tags) in enumerate(sentences):
        windows = [(np.asarray(encoded["input_ids"][index]), word_id_array(encoded.word_ids(index)))]
        if len(windows[0][0]) > max_length:
            where = f"sentence {first_number + index}"
            windows = _split_windows(tokenizer, tokens, windows[0][1], max_length, source, where)
            split_sentences += 1
        tag_ids = np.array([label2id[tag] for tag in tags], dtype=np.int64)
        for ids, window_word_ids in windows:
            input_ids.append(ids.astype(np.int64))
            word_ids.append(window_word_ids)
            labels.append(align_labels(window_word_ids, tag_ids, label_mode))
            window_sentence.append(index)
    return EncodedSplit(
        sentences, input_ids, word_ids, labels, np.array(window_sentence, dtype=np.int64), split_sentences
    )


def _split_windows(tokenizer, tokens, word_ids, max_length, source, where: str):
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    counts = np.bincount(word_ids[word_ids >= 0], minlength=len(tokens))
    try:
        ranges = window_word_ranges(counts, budget)
    except UncuttableWord as error:
        word = error.word
        raise InputError(
            source,
            f"{where}: word {word + 1} ({tokens[word][:40]!r}) alone has {counts[word]} sub-tokens, more than the "
            f"{budget} a window of max_length {max_length} holds: raise ner.hparams.max_length or split the word",
        ) from None
    windows = []
    for start, end in ranges:
        window = tokenizer(tokens[start:end], is_split_into_words=True, verbose=False)
        window_ids = word_id_array(window.word_ids())
        window_ids[window_ids >= 0] += start  # back to sentence word indices
        windows.append((np.asarray(window["input_ids"]), window_ids))
    return windows


def sentence_pieces(split: EncodedSplit, window_values: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Re-join windows: per sentence, (word_ids, values) over its non-special sub-tokens in order."""
    joined = [([], []) for _ in split.sentences]
    for sentence, word_ids, values in zip(split.window_sentence, split.word_ids, window_values):
        real = word_ids >= 0
        joined[sentence][0].append(word_ids[real])
        joined[sentence][1].append(values[real])
    return [(np.concatenate(ids), np.concatenate(vals)) for ids, vals in joined]
