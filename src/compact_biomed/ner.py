"""NER fine-tuning and scoring (spec §4.1), as a small plain-PyTorch loop.

One `finetune` call = one (model, dataset, seed) job: load the splits, put a freshly initialised
token-classification head on a masked-LM checkpoint, train, then score dev and test two ways:

* "paper": seqeval over SUB-TOKENS, every piece of a word carrying the word's tag (a B word cut into
  three pieces counts as three entities), exactly what the official ner.py measures;
* "word": the first piece's prediction stands for the word, seqeval over words (BioBERT/BLURB convention).

Sentences longer than the model's window are cut at word boundaries and re-joined after prediction, so
nothing is truncated. Words the tokenizer turns into zero pieces (a lone zero-width or control character)
keep their own index, so they cannot shift later labels (the official code's bug); at word level they are
predicted "O".
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer, get_scheduler, set_seed
from transformers.utils import logging as hf_logging

from .io import InputError, atomic_path, write_json
from .ner_data import Sentence, dev_file, load_dataset_dir, read_split  # noqa: F401  (read_split: public API)

IGNORE = -100  # label index the loss skips (special tokens, and continuation pieces in "word" mode)
LABEL_MODES = ("paper", "word")
MEGA_BATCH_MULT = 50  # length-grouping window, in batches (as HF's LengthGroupedSampler)

DEFAULT_HPARAMS = {
    "learning_rate": 5e-5,
    "batch_size": 16,
    "epochs": 5,
    "scheduler": "cosine",
    "warmup_ratio": 0.0,
    "weight_decay": 0.01,
    "max_length": 512,
    "label_mode_train": "paper",
    "max_train_sentences": None,  # first N train sentences (quick runs)
    "max_eval_sentences": None,  # first N dev and test sentences (quick runs)
    "threads": None,  # torch CPU threads; None = torch's default
    "eval_batch_size": 64,
    "group_by_length": True,  # False = plain random batches (the benchmark's baseline)
}


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
    mode "paper": every piece gets its word's label (a B word gives B, B, B as in the official code);
    mode "word": only the first piece, the rest IGNORE. Special tokens are always IGNORE. Labels are looked
    up by word index, so a word with no pieces is skipped without shifting the words after it.
    """
    if mode not in LABEL_MODES:
        raise ValueError(f"unknown label mode {mode!r}; expected one of {LABEL_MODES}")
    word_ids = word_id_array(word_ids) if not isinstance(word_ids, np.ndarray) else word_ids
    keep = word_ids >= 0 if mode == "paper" else first_piece_mask(word_ids)
    labels = np.full(len(word_ids), IGNORE, dtype=np.int64)
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


def entity_chunks(sentences: list[list[str]]) -> set[tuple[str, int, int]]:
    """Entity chunks (type, first, last) over all sentences, exactly as seqeval's default (conlleval) mode
    finds them: `I` without `B` opens a chunk, a type change closes one; sentences are joined with an `O`."""
    tags = [tag for sentence in sentences for tag in [*sentence, "O"]]
    chunks, begin, prev_tag, prev_type = set(), 0, "O", ""
    for i, label in enumerate([*tags, "O"]):
        tag, kind = label[0], label[1:].split("-", maxsplit=1)[-1] or "_"
        if chunk_ends(prev_tag, tag, prev_type, kind):
            chunks.add((prev_type, begin, i - 1))
        if chunk_starts(prev_tag, tag, prev_type, kind):
            begin = i
        prev_tag, prev_type = tag, kind
    return chunks


def chunk_ends(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
    return (prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO")
            or (prev_tag not in "O." and prev_type != kind))


def chunk_starts(prev_tag: str, tag: str, prev_type: str, kind: str) -> bool:
    return (tag in "BS" or (prev_tag in "ESO" and tag in "EI")
            or (tag not in "O." and prev_type != kind))


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval's default-mode micro precision/recall/F1 over entity chunks, as fractions.

    The same numbers as `seqeval.metrics` (tests check it on real data) without importing seqeval, which pulls
    in scikit-learn: ~2 s of start-up in each of the workflow's many fine-tuning jobs.
    """
    if [len(s) for s in gold] != [len(s) for s in pred]:
        raise ValueError("gold and predicted sequences differ in length")
    true, predicted = entity_chunks(gold), entity_chunks(pred)
    hits = len(true & predicted)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


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
    labels: list[np.ndarray]  # training targets per window position (IGNORE where not trained)
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
# Batching


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, sort by length inside mega-batches, cut into batches, shuffle the batch order: batches of
    similar lengths (little padding) whose composition and order still change every epoch."""
    order = rng.permutation(len(lengths))
    mega = batch_size * MEGA_BATCH_MULT
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start:start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def random_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(lengths))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(split: EncodedSplit, indices, pad_id: int, device) -> dict:
    """Pad the chosen windows to the longest of them (dynamic padding)."""
    length = max(len(split.input_ids[i]) for i in indices)
    input_ids = np.full((len(indices), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(indices), length), dtype=np.int64)
    labels = np.full((len(indices), length), IGNORE, dtype=np.int64)
    for row, i in enumerate(indices):
        n = len(split.input_ids[i])
        input_ids[row, :n] = split.input_ids[i]
        attention_mask[row, :n] = 1
        labels[row, :n] = split.labels[i]
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return {key: torch.from_numpy(value).to(device) for key, value in batch.items()}


# ---------------------------------------------------------------------------------------------------
# Training and prediction


def autocast(device: torch.device):
    """bf16 on CUDA; plain fp32 on CPU (CPU bf16 is slower for these small matmuls)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def build_optimizer(model, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights (the 1-d parameters) get no weight decay, as HF Trainer."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate)


def train(model, split: EncodedSplit, hp: dict, seed: int, device, pad_id: int) -> tuple[float, int]:
    """Fine-tune in place; returns (seconds, windows seen)."""
    # A window without any trained label (e.g. only zero-piece words) would give a NaN loss.
    usable = np.array([i for i, labels in enumerate(split.labels) if (labels != IGNORE).any()], dtype=np.int64)
    lengths = np.array([len(split.input_ids[i]) for i in usable])
    make_batches = length_grouped_batches if hp["group_by_length"] else random_batches
    steps_per_epoch = math.ceil(len(usable) / hp["batch_size"])
    total_steps = steps_per_epoch * hp["epochs"]
    optimizer = build_optimizer(model, hp["learning_rate"], hp["weight_decay"])
    scheduler = get_scheduler(hp["scheduler"], optimizer, num_warmup_steps=math.ceil(total_steps * hp["warmup_ratio"]),
                              num_training_steps=total_steps)
    rng = np.random.default_rng(seed)
    model.train()
    start = time.perf_counter()
    for _ in range(hp["epochs"]):
        for batch_indices in make_batches(lengths, hp["batch_size"], rng):
            batch = collate(split, usable[batch_indices], pad_id, device)
            with autocast(device):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, len(usable) * hp["epochs"]


@torch.inference_mode()
def predict(model, split: EncodedSplit, batch_size: int, device, pad_id: int) -> list[np.ndarray]:
    """Arg-max label id for every position of every window (length-sorted batches: little padding)."""
    model.eval()
    lengths = np.array([len(ids) for ids in split.input_ids])
    order = np.argsort(lengths, kind="stable")
    predictions: list[np.ndarray] = [None] * len(lengths)  # type: ignore[list-item]
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = collate(split, indices, pad_id, device)
        with autocast(device):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        best = logits.argmax(-1).cpu().numpy()
        for row, i in enumerate(indices):
            predictions[i] = best[row, :lengths[i]]
    return predictions


def evaluate(split: EncodedSplit, window_predictions, id2label: dict) -> tuple[dict, list[list[str]]]:
    """({"paper": scores, "word": scores}, word-level predicted tags per sentence)."""
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
    """Defaults (the paper's) overlaid with `hparams`; unknown keys are an error so typos cannot pass."""
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - set(DEFAULT_HPARAMS))
    if unknown:
        raise ValueError(f"unknown NER hparams {unknown}; known: {sorted(DEFAULT_HPARAMS)}")
    hp = {**DEFAULT_HPARAMS, **hparams}
    if hp["label_mode_train"] not in LABEL_MODES:
        raise ValueError(f"label_mode_train must be one of {LABEL_MODES}, got {hp['label_mode_train']!r}")
    if hp["batch_size"] < 1 or hp["epochs"] < 1:
        raise ValueError("batch_size and epochs must be at least 1")
    return hp


def load_token_classifier(model_dir, id2label: dict):
    """The masked-LM checkpoint with its MLM head dropped and a new token-classification head.

    Only the new head may be missing from the checkpoint: anything else means the encoder would be
    fine-tuned from random weights, which must fail loudly (it replaces the library's verbose load report).
    """
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForTokenClassification.from_pretrained(
            model_dir, num_labels=len(id2label), id2label=id2label,
            label2id={label: i for i, label in id2label.items()}, output_loading_info=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    missing = sorted(key for key in info["missing_keys"] if not key.startswith("classifier."))
    if missing:
        raise InputError(model_dir, f"checkpoint lacks encoder weights, e.g. {missing[:3]} ({len(missing)} missing)")
    return model


def window_length(model, requested: int) -> int:
    """max_length, capped by the model's position embeddings (small demo models have fewer than 512)."""
    positions = getattr(model.config, "max_position_embeddings", None)
    return min(requested, positions) if positions else requested


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

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_seed(seed)  # before building the model: the new classification head is drawn from this seed
    model = load_token_classifier(model_dir, id2label).to(device)
    max_length = window_length(model, hp["max_length"])
    sources = {"train": data_dir / "train.tsv", "dev": dev_file(data_dir), "test": data_dir / "test.tsv"}
    encoded = {
        name: encode_split(tokenizer, sentences, label2id, max_length,
                           hp["label_mode_train"] if name == "train" else "paper", sources[name])
        for name, sentences in splits.items()
    }

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_seconds, samples = train(model, encoded["train"], hp, seed, device, pad_id)
    results, predicted_words = {}, {}
    for name in ("dev", "test"):
        predictions = predict(model, encoded[name], hp["eval_batch_size"], device, pad_id)
        results[name], predicted_words[name] = evaluate(encoded[name], predictions, id2label)

    metrics = {
        "seed": seed,
        "epochs": hp["epochs"],
        "model_dir": str(model_dir),
        "data_dir": str(data_dir),
        "label_mode_train": hp["label_mode_train"],
        "train_sentences": len(splits["train"]),
        "split_sentences": {name: split.split_sentences for name, split in encoded.items()},
        "wall_seconds": round(time.perf_counter() - started, 3),
        "train_samples_per_second": round(samples / train_seconds, 2) if train_seconds > 0 else None,
        "dev": results["dev"],
        "test": results["test"],
    }
    with atomic_path(out_dir, is_dir=True, step="finetune-ner") as tmp:
        write_predictions(tmp / "predictions.tsv", splits["test"], predicted_words["test"])
        write_json(tmp / "metrics.json", metrics)
    return metrics
