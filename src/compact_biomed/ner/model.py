"""The model a fine-tuning starts from: its folder checked, its tokenizer, and the encoder with a new
token-classification head."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import pre_tokenizers
from transformers import AutoModelForTokenClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from ..io import InputError

HEAD_PREFIX = "classifier."  # the token-classification head's weights (BERT, RoBERTa, DistilBERT, ELECTRA...)


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
