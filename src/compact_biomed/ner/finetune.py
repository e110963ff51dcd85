"""One NER fine-tuning job (spec §4.1): one (model, dataset, seed) -> metrics.json and predictions.tsv.

Loads the splits, puts a freshly initialised token-classification head on a masked-LM model (model.py), encodes
the sentences as windows (encode.py), trains and predicts with the Hugging Face Trainer (train.py), then scores dev
and test the two ways of ner.SCORINGS with seqeval (scoring.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import set_seed

from .. import config as cfg
from ..io import atomic_path, write_json
from .data import Sentence, dev_file, load_dataset_dir
from .encode import encode_split
from .model import check_case, check_model_dir, load_token_classifier, load_tokenizer, window_length
from .scoring import score_split
from .train import resolved_precision, train_and_predict


def resolve_hparams(hparams: dict | None) -> dict:
    """`hparams` checked against the schema's `ner.hparams` and completed with its defaults (the paper's): what a
    workflow job gets from its checked config, for a direct caller too. A misspelt key is an error."""
    hp = dict(hparams or {})
    cfg.check_part(hp, "ner.hparams")
    return hp


def write_predictions(path: Path, sentences: list[Sentence], predicted: list[list[str]]) -> None:
    """token<TAB>gold<TAB>pred, blank line after every sentence (conlleval's input layout)."""
    lines = []
    for (tokens, tags), preds in zip(sentences, predicted):
        lines += [f"{token}\t{tag}\t{pred}" for token, tag, pred in zip(tokens, tags, preds)]
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def finetune(model_dir, data_dir, out_dir, seed: int, hparams: dict | None = None) -> dict:
    """Fine-tune `model_dir` (masked-LM HF directory with tokenizer) on the NER set in `data_dir`.

    Writes metrics.json and predictions.tsv (test set, word level) into `out_dir` all-or-nothing and
    returns the metrics. `seed` fixes the head initialisation, dropout and the data order.
    """
    started = time.perf_counter()
    hp = resolve_hparams(hparams)
    hp["precision"] = resolved_precision(hp.get("precision", "auto"))  # recorded as the run trained
    if hp["threads"]:
        torch.set_num_threads(int(hp["threads"]))
    data_dir = Path(data_dir)
    data = load_dataset_dir(data_dir)
    splits = {
        "train": data["train"][: hp["max_train_sentences"]],
        "dev": data["dev"][: hp["max_eval_sentences"]],
        "test": data["test"][: hp["max_eval_sentences"]],
    }
    labels = data["labels"]
    label2id = {label: i for i, label in enumerate(labels)}
    id2label = dict(enumerate(labels))

    check_model_dir(model_dir)
    tokenizer = load_tokenizer(model_dir)
    check_case(model_dir, tokenizer)
    set_seed(seed)  # before building the model: the new classification head is drawn from this seed
    model = load_token_classifier(model_dir, id2label)
    max_length = window_length(model, hp["max_length"])
    sources = {"train": data_dir / "train.tsv", "dev": dev_file(data_dir), "test": data_dir / "test.tsv"}
    # train_dev.tsv holds the train sentences before the dev ones: number a dev sentence as that file does
    first_numbers = {"dev": len(data["train"]) + 1 if sources["dev"].name == "train_dev.tsv" else 1}
    encoded = {
        name: encode_split(
            tokenizer,
            sentences,
            label2id,
            max_length,
            hp["label_mode_train"] if name == "train" else "every_piece",
            sources[name],
            first_numbers.get(name, 1),
        )
        for name, sentences in splits.items()
    }

    figures, predictions = train_and_predict(model, tokenizer, encoded, hp, seed)
    results, predicted_words = {}, {}
    for name in ("dev", "test"):
        results[name], predicted_words[name] = score_split(encoded[name], predictions[name], id2label)

    metrics = {
        "seed": seed,
        "epochs": hp["epochs"],
        "model_dir": str(model_dir),
        "data_dir": str(data_dir),
        "label_mode_train": hp["label_mode_train"],
        "hparams": hp,  # every setting, the schema's defaults included (the table refuses seeds that differ)
        "max_length": max_length,  # the window used: hparams' max_length, capped by the model's positions
        "train_sentences": len(splits["train"]),
        # the splits max_train_sentences / max_eval_sentences shortened: such a run is not comparable with published F1
        "cut_splits": [name for name, sentences in splits.items() if len(sentences) < len(data[name])],
        "split_sentences": {name: split.split_sentences for name, split in encoded.items()},
        "wall_seconds": round(time.perf_counter() - started, 3),
        **figures,
        "dev": results["dev"],
        "test": results["test"],
    }
    with atomic_path(out_dir, is_dir=True, step="finetune-ner") as tmp:
        write_predictions(tmp / "predictions.tsv", splits["test"], predicted_words["test"])
        write_json(tmp / "metrics.json", metrics)
    return metrics
