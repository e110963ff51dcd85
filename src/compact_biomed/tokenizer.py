"""Build a WordPiece tokenizer from text: the demo's stand-in for BioBERT's and the uncased vocabularies."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import BertWordPieceTokenizer
from transformers import BertTokenizer


def build_wordpiece(texts: Iterable[str], out_dir: str | Path, lowercase: bool, vocab_size: int = 2000):
    """Train a BERT WordPiece vocabulary on `texts` and save a Hugging Face tokenizer to `out_dir`.

    Goes through vocab.txt + `BertTokenizer(vocab=...)`: in transformers 5,
    `BertTokenizerFast(vocab_file=...)` silently builds a 5-token vocabulary.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainer = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=lowercase)
    trainer.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1, show_progress=False)
    trainer.save_model(str(out_dir))
    tokenizer = BertTokenizer(vocab=str(out_dir / "vocab.txt"), do_lower_case=lowercase)
    tokenizer.save_pretrained(out_dir)
    return tokenizer
