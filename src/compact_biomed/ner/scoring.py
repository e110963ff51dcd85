"""Scoring a split's predictions with seqeval, two ways (ner.SCORINGS):

* "paper": entity P/R/F over SUB-TOKENS, every piece of a word carrying the word's tag (a B word cut into three
  pieces counts as three entities), as the official ner.py measures (it truncates sentences at 512 pieces, which
  BioBERT's sets never reach; sentences over a model's window are scored whole here, encode.py);
* "word": the first piece's prediction stands for the word, entity P/R/F over words (BioBERT/BLURB convention).

Both also report seqeval's strict IOB2 F1 (`strict_f1`: an I without its B is no entity).
"""

from __future__ import annotations

import numpy as np

from .encode import EncodedSplit, sentence_pieces, words_from_pieces


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval's micro precision/recall/F1 over entity chunks in its default (conlleval) mode, as fractions,
    plus its strict IOB2 F1. Imported here: seqeval pulls in scikit-learn, which only scoring needs."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    return {
        "precision": float(precision_score(gold, pred, zero_division=0)),
        "recall": float(recall_score(gold, pred, zero_division=0)),
        "f1": float(f1_score(gold, pred, zero_division=0)),
        "strict_f1": float(f1_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0)),
    }


def score_split(split: EncodedSplit, window_predictions, id2label: dict) -> tuple[dict, list[list[str]]]:
    """A split's window predictions (label ids) scored: ({"paper": scores, "word": scores}, one per ner.SCORINGS;
    the word-level predicted tags per sentence)."""
    label_names = np.array([id2label[i] for i in range(len(id2label))], dtype=object)
    gold_pieces, pred_pieces, gold_words, pred_words = [], [], [], []
    for (tokens, tags), (word_ids, piece_preds) in zip(split.sentences, sentence_pieces(split, window_predictions)):
        piece_tags = label_names[piece_preds]
        gold_pieces.append(np.asarray(tags, dtype=object)[word_ids].tolist())
        pred_pieces.append(piece_tags.tolist())
        gold_words.append(tags)
        pred_words.append(words_from_pieces(word_ids, piece_tags, len(tokens)))
    scores = {"paper": entity_scores(gold_pieces, pred_pieces), "word": entity_scores(gold_words, pred_words)}
    return scores, pred_words
