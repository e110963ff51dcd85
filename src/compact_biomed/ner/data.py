"""Read and validate BioBERT-style NER splits (`token<TAB>tag` lines, blank line between sentences).

Pure Python (no torch) so data problems surface in a fraction of a second, each as a one-line
InputError naming the file and the line, before any model is loaded.

The splits as the paper's ner.py reads them (spec §4.1): train = train.tsv; dev = the sentences of
train_dev.tsv after the first len(train) sentences (identical to devel.tsv); test = test.tsv;
label set = the tags seen in train.tsv.
"""

from __future__ import annotations

import codecs
import os
import re
from pathlib import Path

from ..io import InputError

Sentence = tuple[list[str], list[str]]

# O, bare B/I (BioBERT's single-type sets) or typed IOB2 (B-Chemical, I-Chemical).
VALID_TAG = re.compile(r"O|[BI](-\S+)?")
# CoNLL's line between documents, a sentence boundary (as BioBERT's reader and transformers' old run_ner read it)
DOCUMENT_SEPARATOR = "-DOCSTART-"
DEV_SOURCES = ("train_dev", "devel")  # where the dev split is read from (see load_dataset_dir)


def read_split(path: str | os.PathLike) -> list[Sentence]:
    """Sentences of one split as (tokens, tags); any malformed line raises InputError with its line number."""
    path = Path(path)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    # Bytes + splitting on b"\n" only, so a CRLF file is reported instead of being silently accepted. A leading
    # UTF-8 BOM (some editors write one) is not part of the first token.
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = _decode_line(path, number, raw)
        if not line or line.split("\t")[0] == DOCUMENT_SEPARATOR:
            if tokens:
                sentences.append((tokens, tags))
                tokens, tags = [], []
            continue
        token, tag = _parse_line(path, number, line)
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append((tokens, tags))
    if not sentences:
        raise InputError(path, "empty file: no sentences")
    return sentences


def _decode_line(path: Path, number: int, raw: bytes) -> str:
    if raw.endswith(b"\r"):
        raise InputError(path, f"line {number}: CRLF line ending (convert the file to LF)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(path, f"line {number}: not valid UTF-8") from None


def _parse_line(path: Path, number: int, line: str) -> tuple[str, str]:
    columns = line.split("\t")
    if len(columns) != 2:
        spaced = " (separated by spaces? a tab goes between them)" if len(columns) == 1 and " " in line.strip() else ""
        raise InputError(
            path, f"line {number}: expected 2 tab-separated columns (token, tag), got {len(columns)}{spaced}"
        )
    token, tag = columns
    if not token:
        raise InputError(path, f"line {number}: empty token")
    if not VALID_TAG.fullmatch(tag):
        raise InputError(path, f"line {number}: invalid tag {tag!r} (expected O, B, I, B-TYPE or I-TYPE)")
    return token, tag


def load_dataset_dir(data_dir: str | os.PathLike, dev_source: str = "train_dev") -> dict:
    """{"train", "dev", "test": sentences, "labels": sorted tags of train.tsv} for one dataset folder.

    dev_source "train_dev" takes dev from the tail of train_dev.tsv, as the paper's code (falls back to devel.tsv
    when that file is absent); "devel" always reads devel.tsv.
    """
    if dev_source not in DEV_SOURCES:  # a caller's bug: no setting chooses it
        raise ValueError(f"unknown dev_source {dev_source!r}; expected one of {DEV_SOURCES}")
    data_dir = Path(data_dir)
    train = read_split(_split_file(data_dir, "train.tsv"))
    dev_path = dev_file(data_dir, dev_source)
    dev = _paper_dev(dev_path, train) if dev_path.name == "train_dev.tsv" else read_split(dev_path)
    test_path = _split_file(data_dir, "test.tsv")
    test = read_split(test_path)
    labels = sorted({tag for _, tags in train for tag in tags})
    _check_known_tags(dev_path, dev, labels, first_number=len(train) + 1 if dev_path.name == "train_dev.tsv" else 1)
    _check_known_tags(test_path, test, labels)
    return {"train": train, "dev": dev, "test": test, "labels": labels}


def dev_file(data_dir: str | os.PathLike, dev_source: str = "train_dev") -> Path:
    """The file the dev split is read from (train_dev.tsv, when present, under dev_source "train_dev")."""
    train_dev = Path(data_dir) / "train_dev.tsv"
    if dev_source == "train_dev" and train_dev.exists():
        return train_dev
    return _split_file(Path(data_dir), "devel.tsv")


def split_files(data_dir: str | os.PathLike, dev_source: str = "train_dev") -> list[Path]:
    """The files load_dataset_dir reads (train, dev source, test); InputError names the first one missing."""
    data_dir = Path(data_dir)
    return [_split_file(data_dir, "train.tsv"), dev_file(data_dir, dev_source), _split_file(data_dir, "test.tsv")]


def _split_file(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    if not path.is_file():
        raise InputError(path, "missing split file")
    return path


def _paper_dev(path: Path, train: list[Sentence]) -> list[Sentence]:
    """The official code's dev split: train_dev.tsv minus its leading copy of train.tsv."""
    train_dev = read_split(path)
    if train_dev[: len(train)] != train:
        raise InputError(path, f"does not start with the {len(train)} sentences of train.tsv")
    dev = train_dev[len(train) :]
    if not dev:
        raise InputError(path, "no dev sentences after the train.tsv part")
    return dev


def _check_known_tags(path: Path, sentences: list[Sentence], labels: list[str], first_number: int = 1) -> None:
    known = set(labels)
    for number, (_, tags) in enumerate(sentences, start=first_number):
        for tag in tags:
            if tag not in known:
                raise InputError(
                    path, f"sentence {number}: tag {tag!r} does not occur in train.tsv (train labels: {labels})"
                )
