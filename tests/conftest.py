"""Shared fixtures: tiny real models and tokenizers built offline, the optional ../shared data, and the demo run
once per test session for every test that inspects its results."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
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


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module, registered in sys.modules (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def shared_path(*parts) -> Path:
    """A path under ../shared/data, or skip the test when the shared data is absent (a user's clone)."""
    path = SHARED.joinpath("data", *parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


def make_tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A 4-layer, 32-hidden random BertForMaskedLM with a cased WordPiece tokenizer, as a HF directory."""
    from compact_biomed.base_models import random_init

    random_init(
        TINY_TEXTS,
        folder,
        "bert",
        lowercase=False,
        vocab_size=300,
        seed=seed,
        config={
            "num_hidden_layers": 4,
            "hidden_size": 32,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 128,
        },
    )
    return folder


def make_tiny_roberta(folder: Path) -> Path:
    """A 2-layer random RobertaForMaskedLM with a byte-level BPE tokenizer (GPT-2's kind), as a HF directory."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForMaskedLM, RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(TINY_TEXTS, vocab_size=400, special_tokens=specials, show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tokenizer = RobertaTokenizer(vocab=model["vocab"], merges=merges)  # from vocab_file, 5 tokens (transformers 5)
    tokenizer.save_pretrained(folder)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=130,  # 128 positions after RoBERTa's padding offset
    )
    torch.manual_seed(0)
    RobertaForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


def tiny_train():
    """Pre-training settings for tiny runs (3 steps of 8 rows, no intermediate checkpoint)."""
    from compact_biomed.pretrain import TrainSettings

    return TrainSettings(
        max_steps=3,
        global_batch_size=8,
        per_device_batch_size=4,
        learning_rate=1e-3,
        warmup_steps=1,
        weight_decay=0.0,
        lr_scheduler="linear",
        mlm_probability=0.15,
        save_steps=0,
        save_total_limit=2,
        logging_steps=1,
        teacher_dropout=True,
        max_grad_norm=1.0,
        precision="auto",
        dataloader_workers=0,
        compile=False,
        packing=False,
    )


def huggingface_pubmed_dataset(folder: Path, citations) -> Path:
    """A local dataset in the layout of the Hugging Face `pubmed` dataset (nested MedlineCitation struct), from
    (pmid, title, abstract) triples."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (folder / "data").mkdir(parents=True)
    article = lambda title, abstract: {"ArticleTitle": title, "Abstract": {"AbstractText": abstract}, "Language": "eng"}
    rows = [
        {"MedlineCitation": {"PMID": pmid, "Article": article(title, abstract)}} for pmid, title, abstract in citations
    ]
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    return folder


SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_FILES = ["Snakefile", "rules", "workflow", "config", "profiles", "environment.yml"]


def run_snakemake(*args, cwd=REPO, timeout=600, extra_env=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(extra_env or {})}
    return subprocess.run(
        [*SNAKEMAKE, *args], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def fault_env(rule: str, marker: Path) -> dict:
    """Environment for a Snakemake run whose `rule` fails once with MemoryError (until `marker` exists): every
    job process loads tests/faults/sitecustomize.py from the PYTHONPATH."""
    path = os.pathsep.join(p for p in (str(REPO / "tests/faults"), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "COMPACT_BIOMED_TEST_FAULT": f"{rule}:{marker}"}


def copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory):
    """A copy of the workflow after `snakemake --cores 2`: the demo runs once however many tests read it."""
    workdir = copy_workflow(tmp_path_factory.mktemp("demo"))
    result = run_snakemake("--cores", "2", cwd=workdir, timeout=1500)  # minutes on a busy 2-core machine
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return workdir
