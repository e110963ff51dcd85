"""Base models as local Hugging Face directories: the teacher (also the baseline row) and the continual models'
start models, the models pre-training begins from (training checkpoints are pretrain's, in results/checkpoints).

Users get the real models with `from_pretrained(hub_id)`; the offline demo gets small randomly initialised
models of the same architecture classes, with a WordPiece tokenizer trained on the demo corpus.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

from .io import InputError, atomic_path, first_line, read_json, write_json
from .tokenizer import build_wordpiece

SOURCE_FILE = "source.json"  # where a local model came from, for the model cards of what is trained on it


def make(source: dict, out_dir: str | Path, corpus: str | Path | None = None) -> None:
    """The base model a config's `teacher` or `models.<name>.start` describes: from the hub, or randomly
    initialised with a tokenizer trained on the corpus (the offline demo)."""
    if "hub_id" in source:
        from_hub(
            source["hub_id"], out_dir, revision=source.get("revision"), tokenizer_id=source.get("tokenizer_hub_id")
        )
    else:
        random_init(corpus_texts(corpus), out_dir, seed=0, **source["random"])


def sources(config: dict) -> dict[str, dict]:
    """The base models a checked config describes, by the names `base-model` takes: the teacher (where the config
    has one), then each continual model's start; distillation students have none (they come from the teacher)."""
    teacher = {"teacher": config["teacher"]} if "teacher" in config else {}
    return {**teacher, **{name: row["start"] for name, row in config["models"].items() if "start" in row}}


def from_hub(hub_id: str, out_dir: str | Path, revision: str | None = None, tokenizer_id: str | None = None) -> None:
    """Download a masked-LM model and its tokenizer and save both to `out_dir`.

    `tokenizer_id` takes the tokenizer from another repository: BioBERT v1.2 ships a bare vocab.txt, which
    AutoTokenizer would lower-case; the official code used bert-base-cased's identical cased vocabulary.
    """
    tokenizer_repo, tokenizer_revision = (tokenizer_id, None) if tokenizer_id else (hub_id, revision)
    with atomic_path(out_dir, is_dir=True, step="base-model") as tmp:
        with hub_errors(f"{tokenizer_repo} @ {tokenizer_revision or 'main'}"):
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_repo, revision=tokenizer_revision)
        tokenizer.save_pretrained(tmp)
        with hub_errors(f"{hub_id} @ {revision or 'main'}"):
            model = AutoModelForMaskedLM.from_pretrained(hub_id, revision=revision)
        model.save_pretrained(tmp)
        write_json(tmp / SOURCE_FILE, {"hub_id": hub_id, "revision": revision, "tokenizer_hub_id": tokenizer_id})


@contextlib.contextmanager
def hub_errors(path: str, where: str | None = None):
    """The hub's failures (no network and nothing cached, unknown repository or revision) as one line naming
    `path` (and `where`, if given); huggingface_hub's and transformers' are OSErrors but for HFValidationError and
    its HTTP client's own (a refused connection, an unknown host)."""
    from huggingface_hub.errors import HFValidationError

    try:
        yield
    except (OSError, HFValidationError, *http_client_errors()) as error:
        prefix = f"{where}: " if where else ""
        raise InputError(path, f"{prefix}{type(error).__name__}: {first_line(error)}") from None


def http_client_errors() -> tuple[type[Exception], ...]:
    """The base error of the HTTP client huggingface_hub uses, which is no OSError: httpx2 (huggingface_hub 2) or
    httpx (1.x); requests' (0.x) are OSErrors."""
    errors = []
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).HTTPError)
        except ImportError:
            pass
    return tuple(errors)


def corpus_texts(corpus_parquet: str | Path) -> list[str]:
    """The training texts of the corpus table, to train the demo's tokenizers on."""
    import pyarrow.parquet as pq

    return pq.read_table(corpus_parquet, columns=["text"]).column("text").to_pylist()


def random_init(
    texts: Iterable[str],
    out_dir: str | Path,
    model_type: str,
    lowercase: bool,
    vocab_size: int,
    seed: int,
    config: dict,
) -> None:
    """Save a randomly initialised masked LM of `model_type` (bert, distilbert, mobilebert...) with its own
    tokenizer trained on `texts`. `config` holds the architecture's own keyword names (hidden_size, dim...)."""
    with atomic_path(out_dir, is_dir=True, step="base-model") as tmp:
        tokenizer = build_wordpiece(texts, tmp, lowercase=lowercase, vocab_size=vocab_size)
        model_config = AutoConfig.for_model(
            model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **config
        )
        torch.manual_seed(seed)
        AutoModelForMaskedLM.from_config(model_config).save_pretrained(tmp)
        write_json(tmp / SOURCE_FILE, {"random": model_type, "seed": seed})


def hub_id(model_dir: str | Path) -> str | None:
    """The hub id a local model was downloaded from; None for random demo models and user folders."""
    source = Path(model_dir) / SOURCE_FILE
    return read_json(source).get("hub_id") if source.exists() else None


def source_name(model_dir: str | Path) -> str:
    """The hub id a local model was downloaded from, else its path (random demo models, user folders)."""
    return hub_id(model_dir) or str(model_dir)
