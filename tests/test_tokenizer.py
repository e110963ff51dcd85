"""The demo's WordPiece tokenizer: the same vocabulary on every run, cased or not, and nothing unknown."""

from conftest import TINY_TEXTS

from compact_biomed.tokenizer import build_wordpiece, wordpiece_vocab


def test_vocabulary_is_identical_across_runs_and_bounded():
    first = wordpiece_vocab(TINY_TEXTS, lowercase=False, vocab_size=90)
    assert first == wordpiece_vocab(list(reversed(TINY_TEXTS)), lowercase=False, vocab_size=90)
    assert len(first) == 90 and len(set(first)) == 90
    assert first[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    everything = wordpiece_vocab(TINY_TEXTS, lowercase=False, vocab_size=10_000)
    assert {"Cisplatin", "nephrotoxicity", "BRCA1"} <= set(everything)  # room for every word: all are in


def test_cased_and_uncased_tokenizers_cover_the_text(tmp_path):
    cased = build_wordpiece(TINY_TEXTS, tmp_path / "cased", lowercase=False, vocab_size=200)
    uncased = build_wordpiece(TINY_TEXTS, tmp_path / "uncased", lowercase=True, vocab_size=200)
    assert "BRCA1" in cased.tokenize("The BRCA1 gene")
    assert uncased.tokenize("The BRCA1 gene")[:2] == ["the", "brca1"]
    # An unseen word falls back to character pieces, never to [UNK].
    assert cased.tokenize("Zzyzx") and cased.unk_token not in cased.tokenize("Cisplatinum")
