"""Published models as table rows: fetched once (hub, pinned revision) or copied from a local folder, checked to
be an encoder with a tokenizer, then fine-tuned exactly like a model this pipeline trained.

The hub repositories of the paper's models were re-uploaded after the paper (config/released.yaml), so a hub row
names its revision and the commit it resolved to is recorded in `source.json`, which the tables' provenance shows.
"""

from __future__ import annotations

import json
import re
import shutil
from fnmatch import fnmatch
from pathlib import Path

from .base_models import SOURCE_FILE, hub_errors
from .io import InputError, atomic_path, first_line, folder_digest, write_json

CONFIG_FILE = "config.json"
# What fine-tuning reads: config, weights (safetensors preferred, single or sharded), tokenizer files.
WEIGHT_PATTERNS = {
    "safetensors": ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"],
    "bin": ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"],
}
TOKENIZER_PATTERNS = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
]
TOKENIZER_VOCABULARIES = [
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "spm.model",
    "sentencepiece.bpe.model",
]
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
SHORT_COMMIT = re.compile(r"[0-9a-f]{7,39}")


def matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch(name, p) for p in patterns)


def weight_format(files: list[str]) -> str | None:
    """`safetensors` where the model has them, else `bin`; None when it has no weights at all."""
    for name, patterns in WEIGHT_PATTERNS.items():
        if any(matches(f, patterns) for f in files):
            return name
    return None


def encoder_types() -> list[str]:
    """Model types that are masked-LM encoders with a token-classification head (decoders such as gpt2 also have
    one, but are not what this table compares), longest first."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
    )

    return sorted(
        set(MODEL_FOR_MASKED_LM_MAPPING_NAMES) & set(MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES),
        key=len,
        reverse=True,
    )


def encoder_problem(folder: Path) -> str | None:
    """Why `folder` is not a model NER can fine-tune (config of a token-classification model type, weights,
    a tokenizer vocabulary), or None. Reads file names and config.json only: cheap enough for the DAG's start."""
    if not folder.is_dir():
        return "no such folder"
    config = folder / CONFIG_FILE
    if not config.is_file():
        return f"no {CONFIG_FILE}: not a Hugging Face model folder"
    try:
        model_type = model_type_of(json.loads(config.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return f"{CONFIG_FILE} is not a JSON object"
    if model_type not in encoder_types():
        return f"model_type {model_type!r} is not a masked-LM encoder that transformers can fine-tune for NER"
    files = [p.name for p in folder.iterdir()]
    if weight_format(files) is None:
        return "no weights (model.safetensors or pytorch_model.bin)"
    if not any(name in files for name in TOKENIZER_VOCABULARIES):
        return f"no tokenizer (one of {', '.join(TOKENIZER_VOCABULARIES)})"
    return next(filter(None, (safetensors_problem(folder / name) for name in sorted(files))), None)


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file would not load (cut short, not safetensors), or None: its header says where every
    tensor lies, and opening it checks that the file covers them; the tensors are not read."""
    from safetensors import SafetensorError, safe_open

    if path.suffix != ".safetensors":
        return None
    try:
        with safe_open(path, "pt"):
            return None
    except (SafetensorError, OSError) as error:
        return f"{path.name} is cut short or not a safetensors file ({first_line(error) or type(error).__name__})"


# ---------------------------------------------------------------------------------------------------------------
# Hub rows


def cached_commit(hub_id: str, prefix: str) -> str | None:
    """A cached snapshot whose commit starts with `prefix` (works offline, and saves an API call online)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    snapshots = Path(HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    found = sorted(p.name for p in snapshots.glob(f"{prefix}*")) if snapshots.is_dir() else []
    return found[0] if len(found) == 1 else None


def resolve_revision(hub_id: str, revision: str) -> str:
    """The revision to download: a short commit hash (as the hub's web pages show them, which its download API
    refuses) becomes the full one; branches, tags and full hashes pass unchanged."""
    if FULL_COMMIT.fullmatch(revision) or not SHORT_COMMIT.fullmatch(revision):
        return revision
    commit = cached_commit(hub_id, revision)
    if commit:
        return commit
    from huggingface_hub import list_repo_commits

    found = [c.commit_id for c in list_repo_commits(hub_id) if c.commit_id.startswith(revision)]
    if len(found) != 1:
        raise InputError(hub_id, f"revision {revision!r} matches {len(found)} commits; give the full commit hash")
    return found[0]


def hub_snapshot(hub_id: str, revision: str, patterns: list[str]) -> Path:
    """Download (or find in the Hugging Face cache) the files of `hub_id` at `revision` matching `patterns`; the
    snapshot folder's name is the commit it resolved to."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(hub_id, revision=revision, allow_patterns=patterns))


def hub_weight_patterns(hub_id: str, revision: str) -> list[str]:
    """Only one weight format is downloaded (many repositories carry both, doubling the download)."""
    from huggingface_hub import list_repo_files
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        files = list_repo_files(hub_id, revision=revision)
    except OfflineModeIsEnabled:  # from the cache: whatever format it holds
        return WEIGHT_PATTERNS["safetensors"] + WEIGHT_PATTERNS["bin"]
    return WEIGHT_PATTERNS[weight_format(files) or "safetensors"]


def copy_files(source: Path, dest: Path, patterns: list[str]) -> list[str]:
    """Copy the matching files (following the cache's symbolic links); returns their names."""
    names = sorted(p.name for p in source.iterdir() if p.is_file() and matches(p.name, patterns))
    for name in names:
        shutil.copyfile(source / name, dest / name)
    return names


def weights_digest(folder: Path) -> str:
    """sha256 over the weight files: the provenance of a local folder, which has no commit."""
    return folder_digest(folder, [p for patterns in WEIGHT_PATTERNS.values() for p in patterns])


def fetch(source: dict, out_dir: str | Path, key: str) -> dict:
    """Make `out_dir` the published model `source` ({hub_id, revision[, tokenizer_hub_id,
    tokenizer_revision]} or {path}); `key` is its config key, named by every error. Returns its provenance."""
    with atomic_path(out_dir, is_dir=True, step="fetch-pretrained") as tmp:
        if "path" in source:
            folder = Path(source["path"])
            problem = encoder_problem(folder)
            if problem:
                raise InputError(key, f"{folder}: {problem}")
            names = [f.name for f in folder.iterdir()]
            weights = WEIGHT_PATTERNS[weight_format(names)]
            copy_files(folder, tmp, [CONFIG_FILE, *weights, *TOKENIZER_PATTERNS])
            provenance = {"path": str(folder.resolve()), "weights_sha256": weights_digest(tmp)}
        else:
            provenance = fetch_hub_row(source, tmp, key)
        added = add_model_type(tmp)
        if added:
            provenance["model_type_added"] = added
        problem = encoder_problem(tmp) or load_problem(tmp, FOLDER_CASE_ADVICE if "path" in source else HUB_CASE_ADVICE)
        if problem:
            raise InputError(key, f"{source.get('hub_id') or source['path']}: {problem}")
        write_json(tmp / SOURCE_FILE, provenance)
    return provenance


def fetch_hub_row(source: dict, dest: Path, key: str) -> dict:
    """`fetch_hub`, with the hub's errors (unknown repository or revision, no network and nothing cached) as one
    line naming the row's key."""
    with hub_errors(key, f"{source['hub_id']} @ {source['revision']}"):
        return fetch_hub(source, dest)


def fetch_hub(source: dict, dest: Path) -> dict:
    hub_id, revision = source["hub_id"], resolve_revision(source["hub_id"], source["revision"])
    tokenizer_id = source.get("tokenizer_hub_id")
    patterns = [CONFIG_FILE, *hub_weight_patterns(hub_id, revision), *([] if tokenizer_id else TOKENIZER_PATTERNS)]
    snapshot = hub_snapshot(hub_id, revision, patterns)
    copy_files(snapshot, dest, patterns)
    provenance = {"hub_id": hub_id, "revision": source["revision"], "commit": snapshot.name}
    if tokenizer_id:  # e.g. a repository whose bare vocab.txt AutoTokenizer would lower-case
        tokenizer_revision = source.get("tokenizer_revision", "main")
        tokenizer = hub_snapshot(tokenizer_id, resolve_revision(tokenizer_id, tokenizer_revision), TOKENIZER_PATTERNS)
        copy_files(tokenizer, dest, TOKENIZER_PATTERNS)
        provenance.update(
            tokenizer_hub_id=tokenizer_id, tokenizer_revision=tokenizer_revision, tokenizer_commit=tokenizer.name
        )
    return provenance


def model_type_of(config: dict) -> str | None:
    """config.json's `model_type`; older models (TinyBERT's, for one) have none, which the Auto classes need,
    so it is read from the architecture class name (`BertForPreTraining` -> bert)."""
    if config.get("model_type"):
        return config["model_type"]
    for architecture in config.get("architectures") or []:
        found = [t for t in encoder_types() if architecture.lower().startswith(t.replace("-", "").replace("_", ""))]
        if found:
            return found[0]
    return None


def add_model_type(folder: Path) -> str | None:
    """Write the model type read from the architecture into our copy's config.json; returns what was added."""
    path = folder / CONFIG_FILE
    config = json.loads(path.read_text())
    if config.get("model_type") or not model_type_of(config):
        return None
    path.write_text(json.dumps({**config, "model_type": model_type_of(config)}, indent=2) + "\n")
    return model_type_of(config)


# How to give a model whose tokenizer lower-cases a cased vocabulary its cased tokenizer (case_problem).
HUB_CASE_ADVICE = "set tokenizer_hub_id to the cased tokenizer it was trained with (e.g. google-bert/bert-base-cased)"
FOLDER_CASE_ADVICE = 'set "do_lower_case": false in the folder\'s tokenizer_config.json (create it if absent)'


def load_problem(folder: Path, case_advice: str) -> str | None:
    """Why the folder's tokenizer or config does not load with the Auto classes fine-tuning uses, or None."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as error:
        return f"does not load: {first_line(error)}"
    if not tokenizer.is_fast:
        return "needs a fast tokenizer (word alignment for NER); add a tokenizer.json"
    return vocabulary_problem(tokenizer, getattr(config, "vocab_size", None)) or case_problem(tokenizer, case_advice)


def vocabulary_problem(tokenizer, vocab_size: int | None) -> str | None:
    """A tokenizer far smaller than the model's vocabulary is not the one it was trained with: most words would be
    [UNK] and its F1 near 0 without a word (transformers 5's BertTokenizerFast(vocab_file=...) builds one of 5)."""
    if vocab_size and len(tokenizer) < vocab_size / 2:
        return (
            f"its tokenizer has {len(tokenizer):,} pieces for the model's {vocab_size:,}: not the tokenizer it was "
            f"trained with (most words would become {tokenizer.unk_token or 'unknown'}); save the model's own"
        )
    return None


def case_problem(tokenizer, advice: str) -> str | None:
    """A cased vocabulary behind a lower-casing tokenizer (a bare vocab.txt, as BioBERT v1.2 and
    biobert-base-cased-v1.1 ship, loads lower-casing): every capitalised word would become [UNK] or split. The
    problem ends with `advice`: how to give this kind of source its cased tokenizer."""
    vocab = tokenizer.get_vocab()
    cased = sum(token[:1].isupper() for token in vocab) / max(len(vocab), 1)
    lowercases = tokenizer.tokenize("Aspirin") == tokenizer.tokenize("aspirin")  # whatever its vocabulary holds
    if cased > 0.01 and lowercases:  # a lower-cased vocabulary holds no capitalised piece
        return f"its tokenizer lower-cases text but {cased:.0%} of its vocabulary is capitalised; {advice}"
    return None


def provenance_text(source: dict) -> str:
    """One line saying where a row's weights came from, for the tables."""
    if "hub_id" in source:
        text = f"{source['hub_id']} @ {source.get('commit') or source.get('revision')}"
        if source.get("tokenizer_hub_id"):
            text += f" (tokenizer {source['tokenizer_hub_id']} @ {source.get('tokenizer_commit')})"
        return text
    if "path" in source:
        return f"{source['path']} (weights sha256 {source['weights_sha256'][:12]})"
    if "random" in source:
        return f"random {source['random']} (seed {source.get('seed')})"
    return "unknown"
