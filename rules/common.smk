# Shared set-up: config validation, the lists every stage expands over, wildcard constraints, input functions.
import re
import shutil
import sys
from pathlib import Path

# The package is pip-installed for the jobs (`make setup`); the Snakefile itself also finds it in a bare clone.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from compact_biomed import config as cfg
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

try:
    cfg.check(config, Path(workflow.basedir) / "config/schema.yaml")
except cfg.ConfigError as error:
    raise WorkflowError(str(error)) from None
validate(config, "../config/schema.yaml")  # fills in the schema's defaults

TEACHER = config["teacher"]["name"]
MODELS = list(config["models"])
TABLE_MODELS = cfg.table_models(config)  # the teacher baseline, then the compact models: the tables' rows
TOKENIZER_OWNERS = cfg.tokenizer_owners(config)
DATASETS = config["ner"]["datasets"]
SEEDS = config["ner"]["seeds"]
PUBMED_FILES = cfg.pubmed_names(config)
NUM_SHARDS = config["tokenize"]["num_shards"]
SPLITS = ["train", "devel", "test", "train_dev"]
# Training jobs hold one GPU where there is one; the profile caps how many run at once (profiles/default: one).
# A CPU-only machine requests none, so its training jobs run side by side on the cores.
GPU_PER_JOB = 1 if shutil.which("nvidia-smi") else 0
# Several NER fine-tunings share one GPU (one alone leaves it mostly idle): each takes one of the GPU's
# `gpu_slots` (profiles/default: 4, or `--resources gpu_slots=K`); pre-training and model_stats take them all.
# On SLURM the same sharing comes from group jobs (profiles/slurm: groups, group-components).
GPU_SLOTS = getattr(workflow.global_resources.get("gpu_slots"), "value", None) or 1


wildcard_constraints:
    model="|".join(re.escape(m) for m in [TEACHER, *MODELS]),
    student="|".join(re.escape(m) for m in MODELS),
    owner="|".join(re.escape(m) for m in TOKENIZER_OWNERS),
    dataset="|".join(re.escape(d) for d in DATASETS),
    seed=r"\d+",
    shard=r"\d+",
    total=r"\d+",
    name=r"pubmed\d{2}n\d{4}",
    split="|".join(SPLITS),


def model_path(model):
    """The Hugging Face directory of a model in the table: the teacher (baseline) or a compact model."""
    return "results/teacher" if model == TEACHER else f"results/models/{model}"


def model_dir(wildcards):
    return model_path(wildcards.model)


def tokenizer_dir(wildcards):
    return "results/teacher" if wildcards.owner == "teacher" else f"results/start/{wildcards.owner}"


def shard_dirs(owner):
    return [f"results/shards/{owner}/shard-{i:04d}-of-{NUM_SHARDS:04d}" for i in range(NUM_SHARDS)]


def pubmed_source(suffix):
    """A baseline file from the configured local folder, or nothing (then the fetch rule downloads it)."""
    local = config["pubmed"]["local_dir"]
    return (lambda wc: f"{local}/{wc.name}{suffix}") if local else []


def parsed_pubmed_files():
    """The parsed sources the corpus merges, in order: every baseline file, or the Hugging Face dataset."""
    if config["pubmed"]["source"] == "huggingface":
        return ["results/pubmed/parsed/huggingface.parquet"]
    return expand("results/pubmed/parsed/{name}.parquet", name=PUBMED_FILES)


def corpus_if_random(source):
    """Random demo checkpoints train their tokenizer on the corpus; hub checkpoints need no input."""
    return ["results/pubmed/corpus.parquet"] if "random" in source else []


def pretrain_inputs(wildcards):
    """Shards of the tokenizer the model trains on, plus the teacher or the start checkpoint."""
    owner = cfg.tokenizer_owner(config, wildcards.student)
    inputs = {"shards": shard_dirs(owner), "manifest": f"results/shards/{owner}/manifest.json"}
    if owner == "teacher":
        inputs["teacher"] = "results/teacher"
    else:
        inputs["start"] = f"results/start/{wildcards.student}"
    return inputs
