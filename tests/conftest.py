"""Shared fixtures: tiny real models and tokenizers built offline, and the optional ../shared data."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

TINY_TEXTS = [
    "Aspirin reduces fever in patients with influenza.",
    "Cisplatin induced nephrotoxicity was observed in 12 patients.",
    "The BRCA1 gene is associated with breast cancer and ovarian cancer.",
    "Metformin lowers blood glucose in type 2 diabetes.",
    "Hypertension and heart failure were treated with lisinopril.",
] * 20


def shared_path(*parts) -> Path:
    """A path under ../shared/data, or skip the test when the shared data is absent (a user's clone)."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 4-layer, 32-hidden random BertForMaskedLM with a cased WordPiece tokenizer, as a HF directory."""
    from compact_biomed.checkpoints import random_init

    out = tmp_path_factory.mktemp("models") / "tiny-bert"
    random_init(TINY_TEXTS, out, "bert", lowercase=False, vocab_size=300, seed=0,
                config=dict(num_hidden_layers=4, hidden_size=32, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=128))
    return out
