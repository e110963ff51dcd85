"""NER fine-tuning and scoring (spec §4.1) on the Hugging Face Trainer, scored with seqeval.

One `finetune` call = one (model, dataset, seed) job: load the splits, put a freshly initialised
token-classification head on a masked-LM model, train with `Trainer` (random batches as the official
code, `DataCollatorForTokenClassification`), then score dev and test two ways:

* "paper": seqeval over SUB-TOKENS, every piece of a word carrying the word's tag (a B word cut into
  three pieces counts as three entities), exactly what the official ner.py measures;
* "word": the first piece's prediction stands for the word, seqeval over words (BioBERT/BLURB convention).

Both also report seqeval's strict IOB2 F1 (`strict_f1`: an I without its B is no entity).

Sentences longer than the model's window are cut at word boundaries and re-joined after prediction, so
nothing is truncated. Words the tokenizer turns into zero pieces (a lone zero-width or control character)
keep their own index, so they cannot shift later labels (the official code's bug); at word level they are
predicted "O".
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import pre_tokenizers
from transformers import (
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.utils import logging as hf_logging

from .. import IGNORE_INDEX, one_gpu
from .. import config as cfg
from ..io import InputError, atomic_path, write_json
from .data import Sentence, dev_file, load_dataset_dir, read_split  # noqa: F401  (read_split: public API)

# Which pieces of a word carry its label in training (label_mode_train): every piece, as the official code, or only
# the first, the others IGNORE_INDEX (the BioBERT/BLURB convention).
LABEL_MODES = ("every_piece", "first_piece")
HEAD_PREFIX = "classifier."  # the token-classification head's weights (BERT, RoBERTa, DistilBERT, ELECTRA...)
# Fewer distinct batch shapes: fresh GPU jobs of the old loop ran 3.1x faster than with exact padding (issue 14's
# H200 probe). On an H100 each new shape costs cuDNN's attention a new plan, about 5 ms a call
# (benchmarks/results/h100-length-split-probe.txt).
CUDA_PAD_MULTIPLE = 64

# ---------------------------------------------------------------------------------------------------
# Sub-token <-> word alignment


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


# ---------------------------------------------------------------------------------------------------
# Scoring


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


def score_paper(gold_subtoken_tags: list[list[str]], pred_subtoken_tags: list[list[str]]) -> dict:
    """The official metric: entity P/R/F over sub-tokens (gold = word tag on every piece)."""
    return entity_scores(gold_subtoken_tags, pred_subtoken_tags)


def score_words(gold_word_tags: list[list[str]], pred_word_tags: list[list[str]]) -> dict:
    """The standard metric: entity P/R/F over words (pred = first piece's tag)."""
    return entity_scores(gold_word_tags, pred_word_tags)


# ---------------------------------------------------------------------------------------------------
# Encoding: sentences -> windows of at most max_length sub-tokens


@dataclass
class EncodedSplit:
    """One split as model windows, plus what is needed to map window predictions back to sentences."""

    sentences: list[Sentence]
    input_ids: list[np.ndarray]  # one per window, special tokens included
    word_ids: list[np.ndarray]  # per window position: word index within the SENTENCE, -1 for special tokens
    labels: list[np.ndarray]  # training targets per window position (IGNORE_INDEX where not trained)
    window_sentence: np.ndarray  # sentence index of every window, in sentence order
    split_sentences: int  # sentences that needed more than one window


def window_word_ranges(piece_counts, budget: int) -> list[tuple[int, int]]:
    """Greedy [start, end) word ranges whose piece counts each sum to at most `budget`."""
    ranges, start, used = [], 0, 0
    for word, count in enumerate(piece_counts):
        if count > budget:
            raise ValueError(f"word {word} alone has {count} sub-tokens, more than the {budget} that fit")
        if used + count > budget:
            ranges.append((start, word))
            start, used = word, 0
        used += count
    ranges.append((start, len(piece_counts)))
    return ranges


def encode_split(tokenizer, sentences, label2id: dict, max_length: int, label_mode: str, source) -> EncodedSplit:
    """Tokenize pre-split words; sentences over max_length sub-tokens become several windows."""
    encoded = tokenizer([tokens for tokens, _ in sentences], is_split_into_words=True, verbose=False)
    split = EncodedSplit(sentences, [], [], [], np.zeros(0, dtype=np.int64), 0)
    window_sentence = []
    for index, (tokens, tags) in enumerate(sentences):
        windows = [(np.asarray(encoded["input_ids"][index]), word_id_array(encoded.word_ids(index)))]
        if len(windows[0][0]) > max_length:
            windows = _split_windows(tokenizer, tokens, windows[0][1], max_length, source, index)
            split.split_sentences += 1
        tag_ids = np.array([label2id[tag] for tag in tags], dtype=np.int64)
        for input_ids, word_ids in windows:
            split.input_ids.append(input_ids.astype(np.int64))
            split.word_ids.append(word_ids)
            split.labels.append(align_labels(word_ids, tag_ids, label_mode))
            window_sentence.append(index)
    split.window_sentence = np.array(window_sentence, dtype=np.int64)
    return split


def _split_windows(tokenizer, tokens, word_ids, max_length, source, index):
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    counts = np.bincount(word_ids[word_ids >= 0], minlength=len(tokens))
    try:
        ranges = window_word_ranges(counts, budget)
    except ValueError as error:
        raise InputError(source, f"sentence {index + 1} of the split: {error} (max_length {max_length})") from None
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


# ---------------------------------------------------------------------------------------------------
# Training and prediction (Hugging Face Trainer)


class ProgressLog(TrainerCallback):
    """Progress in the job's log: loss, epoch and samples/s every `logging_steps`, and each epoch's rate."""

    def __init__(self, samples_per_epoch: int, batch_size: int):
        self.samples_per_epoch, self.batch_size = samples_per_epoch, batch_size
        self.epoch_rates: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the GPU's queued steps belong to this epoch
        self.epoch_rates.append(round(self.samples_per_epoch / (time.perf_counter() - self.epoch_started), 2))
        print(f"epoch {len(self.epoch_rates)}: {self.epoch_rates[-1]} samples/s", flush=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            rate = state.global_step * self.batch_size / (time.perf_counter() - self.started)
            print(
                f"step {state.global_step}/{state.max_steps} epoch {state.epoch:.2f} loss {logs['loss']:.4f} "
                f"lr {logs.get('learning_rate', 0):.3g} {rate:.1f} samples/s",
                flush=True,
            )


def window_features(split: EncodedSplit, with_labels: bool) -> list[dict]:
    """The windows as the collator's features (plain lists: what tokenizer.pad expects)."""
    if not with_labels:
        return [{"input_ids": ids.tolist()} for ids in split.input_ids]
    return [
        {"input_ids": ids.tolist(), "labels": labels.tolist()}
        for ids, labels in zip(split.input_ids, split.labels)
        # A window without any trained label (e.g. only zero-piece words) would give a NaN loss.
        if (labels != IGNORE_INDEX).any()
    ]


def pad_multiple(multiple: int | None) -> int | None:
    multiple = multiple or (CUDA_PAD_MULTIPLE if torch.cuda.is_available() else 1)
    return None if multiple == 1 else multiple


def training_arguments(scratch: str, hp: dict, seed: int, train_windows: int) -> TrainingArguments:
    """The paper's fine-tuning settings as Trainer arguments: AdamW (no decay on biases and LayerNorm), gradient
    clipping at 1, no evaluation or checkpoints during training; bf16 on CUDA, fp32 on CPU."""
    total_steps = math.ceil(train_windows / hp["batch_size"]) * hp["epochs"]
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=scratch,
        seed=seed,
        learning_rate=hp["learning_rate"],
        weight_decay=hp["weight_decay"],
        lr_scheduler_type=hp["scheduler"],
        warmup_steps=math.ceil(total_steps * hp["warmup_ratio"]),
        num_train_epochs=hp["epochs"],
        per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=hp["eval_batch_size"],
        max_grad_norm=1.0,
        bf16=bf16(),
        train_sampling_strategy="group_by_length" if hp["group_by_length"] else "random",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=hp["logging_steps"],
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=cuda,
        # The host need not wait for the GPU: batches copied from pinned memory without waiting for the copy, and
        # no read of each step's loss for the NaN filter (a NaN loss is logged as it is)
        accelerator_config={"non_blocking": cuda},
        logging_nan_inf_filter=False,
    )
    return one_gpu(args)


def bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def argmax_labels(logits, labels):
    return logits.argmax(-1)  # keep label ids, not the logits, across batches


def train_and_predict(model, tokenizer, encoded: dict, hp: dict, seed: int) -> tuple[dict, dict]:
    """Fine-tune in place, then predict dev and test. Returns (training figures, per split the arg-max label
    id of every position of every window)."""
    train_features = window_features(encoded["train"], with_labels=True)
    padding = pad_multiple(hp["pad_to_multiple_of"])
    collator = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=padding)
    progress = ProgressLog(len(train_features), hp["batch_size"])
    device = (
        f"cuda ({'bf16' if bf16() else 'fp32'})"
        if torch.cuda.is_available()
        else (f"cpu ({torch.get_num_threads()} threads)")
    )
    print(
        f"training on {len(train_features)} windows, {hp['epochs']} epochs, batch {hp['batch_size']}, {device}, "
        f"{'length-grouped' if hp['group_by_length'] else 'random'} batches padded to a multiple of "
        f"{padding or 1}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="compact-biomed-ner-") as scratch:  # Trainer's output_dir: ours alone
        trainer = Trainer(
            model=model,
            args=training_arguments(scratch, hp, seed, len(train_features)),
            data_collator=collator,
            train_dataset=train_features,
            callbacks=[progress],
            preprocess_logits_for_metrics=argmax_labels,
        )
        trainer.remove_callback(PrinterCallback)  # ProgressLog prints instead of raw log dicts
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        predictions = {name: predict(trainer, encoded[name]) for name in ("dev", "test")}
    samples = len(train_features) * hp["epochs"]
    figures = {
        "train_samples_per_second": round(samples / seconds, 2) if seconds > 0 else None,
        "epoch_samples_per_second": progress.epoch_rates,
    }
    return figures, predictions


def predict(trainer: Trainer, split: EncodedSplit) -> list[np.ndarray]:
    """Arg-max label id per window position; windows go in length order (little padding) and come back in
    split order."""
    lengths = np.array([len(ids) for ids in split.input_ids])
    order = np.argsort(lengths, kind="stable")
    features = window_features(split, with_labels=False)
    best = trainer.predict([features[i] for i in order]).predictions
    predictions: list[np.ndarray] = [None] * len(lengths)  # type: ignore[list-item]
    for row, i in enumerate(order):
        predictions[i] = best[row, : lengths[i]]
    return predictions


def evaluate(split: EncodedSplit, window_predictions, id2label: dict) -> tuple[dict, list[list[str]]]:
    """({"paper": scores, "word": scores}: one per ner.SCORINGS, word-level predicted tags per sentence)."""
    label_names = np.array([id2label[i] for i in range(len(id2label))], dtype=object)
    gold_pieces, pred_pieces, gold_words, pred_words = [], [], [], []
    for (tokens, tags), (word_ids, piece_preds) in zip(split.sentences, sentence_pieces(split, window_predictions)):
        piece_tags = label_names[piece_preds]
        gold_pieces.append(np.asarray(tags, dtype=object)[word_ids].tolist())
        pred_pieces.append(piece_tags.tolist())
        gold_words.append(tags)
        pred_words.append(words_from_pieces(word_ids, piece_tags, len(tokens)))
    scores = {"paper": score_paper(gold_pieces, pred_pieces), "word": score_words(gold_words, pred_words)}
    return scores, pred_words


# ---------------------------------------------------------------------------------------------------
# The job


def resolve_hparams(hparams: dict | None) -> dict:
    """`hparams` checked against the schema's `ner.hparams` and completed with its defaults (the paper's): what a
    workflow job gets from its checked config, for a direct caller too. A misspelt key is an error."""
    hp = dict(hparams or {})
    cfg.check_part(hp, "ner.hparams")
    return hp


def check_model_dir(model_dir) -> None:
    """One line naming a folder that holds no model to fine-tune, instead of transformers' loading errors."""
    from ..pretrained import CONFIG_FILE, encoder_problem, model_type_of

    problem = encoder_problem(Path(model_dir))
    if problem:
        raise InputError(model_dir, problem)
    config_file = Path(model_dir) / CONFIG_FILE
    config = json.loads(config_file.read_text())
    if not config.get("model_type"):  # read from the architecture; the Auto classes need it written
        raise InputError(
            config_file,
            f'has no model_type: add "model_type": "{model_type_of(config)}" (fetch-pretrained adds it to its copy)',
        )


def check_case(model_dir, tokenizer) -> None:
    """One line for a cased vocabulary behind a lower-casing tokenizer: the workflow's fetch_pretrained refuses
    such a row, and a folder given by hand would otherwise train on lower-cased pieces without a word."""
    from ..pretrained import FOLDER_CASE_ADVICE, case_problem

    problem = case_problem(tokenizer, FOLDER_CASE_ADVICE)
    if problem:
        raise InputError(model_dir, problem)


def load_tokenizer(model_dir):
    """The model's tokenizer, reading each pre-split word as a word inside running text: byte-level BPE
    (RoBERTa, GPT-2, ModernBERT) needs `add_prefix_space` for that (transformers' own docs and run_ner.py);
    WordPiece and SentencePiece read every pre-split word as one anyway."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, add_prefix_space=True)
    # The flag reaches only the classes that build their pre-tokenizer from it (RoBERTa's, GPT-2's), not the generic
    # one of ModernBERT and of folders naming PreTrainedTokenizerFast: set it on the byte-level step itself.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = backend.pre_tokenizer if backend else None
    steps = list(pre) if isinstance(pre, pre_tokenizers.Sequence) else [pre]
    byte_level = [step for step in steps if isinstance(step, pre_tokenizers.ByteLevel) and not step.add_prefix_space]
    for step in byte_level:
        step.add_prefix_space = True
    if byte_level:
        backend.pre_tokenizer = pre
    return tokenizer


def load_token_classifier(model_dir, id2label: dict):
    """The masked-LM model with its MLM head dropped and a new token-classification head.

    Only the new head may be missing from the saved model: anything else means the encoder would be
    fine-tuned from random weights, which must fail loudly (it replaces the library's verbose load report).
    A folder's own token-classification head (a model fine-tuned on another NER set) is replaced by a new one.
    """
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForTokenClassification.from_pretrained(
            model_dir,
            num_labels=len(id2label),
            id2label=id2label,
            label2id={label: i for i, label in id2label.items()},
            output_loading_info=True,
            ignore_mismatched_sizes=True,  # a saved head of another size; any other mismatch is refused below
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    mismatched = sorted(key for key, *_ in info["mismatched_keys"] if not key.startswith(HEAD_PREFIX))
    if mismatched:
        raise InputError(model_dir, f"weights whose shapes differ from its config.json's, e.g. {mismatched[:3]}")
    missing = sorted(key for key in info["missing_keys"] if not key.startswith(HEAD_PREFIX))
    if missing:
        raise InputError(model_dir, f"model lacks encoder weights, e.g. {missing[:3]} ({len(missing)} missing)")
    if not any(key.startswith(HEAD_PREFIX) for key in info["missing_keys"]):
        draw_new_head(model)
    return model


def draw_new_head(model) -> None:
    """Draw the head again, from the seed (normal with the config's initializer_range, zero bias: how transformers
    draws a missing head for BERT-like models): a head loaded from the folder would start fine-tuning from another
    task's labels."""
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        torch.nn.init.normal_(model.classifier.weight, std=std)
        torch.nn.init.zeros_(model.classifier.bias)


def window_length(model, requested: int) -> int:
    """max_length, capped by the positions the model has: small demo models have fewer than 512, and RoBERTa-like
    models (a position embedding with a padding id) number their positions from after that id."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if not positions:
        return requested
    embedding = getattr(getattr(model.base_model, "embeddings", None), "position_embeddings", None)
    padding_id = getattr(embedding, "padding_idx", None)
    return min(requested, positions - (padding_id + 1 if padding_id is not None else 0))


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
    encoded = {
        name: encode_split(
            tokenizer,
            sentences,
            label2id,
            max_length,
            hp["label_mode_train"] if name == "train" else "every_piece",
            sources[name],
        )
        for name, sentences in splits.items()
    }

    figures, predictions = train_and_predict(model, tokenizer, encoded, hp, seed)
    results, predicted_words = {}, {}
    for name in ("dev", "test"):
        results[name], predicted_words[name] = evaluate(encoded[name], predictions[name], id2label)

    metrics = {
        "seed": seed,
        "epochs": hp["epochs"],
        "model_dir": str(model_dir),
        "data_dir": str(data_dir),
        "label_mode_train": hp["label_mode_train"],
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
