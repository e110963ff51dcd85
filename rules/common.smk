# Shared set-up: config validation, the lists every stage expands over, wildcard constraints, input functions.
import itertools
import os
import re
import shutil
import sys
import uuid
from pathlib import Path

# The Snakefile and every job import this clone's src/ first, whatever package an environment holds: a conda
# environment shared through --conda-prefix (same environment.yml, same hash) holds the clone that created it.
SRC = Path(workflow.basedir) / "src"
sys.path.insert(0, str(SRC))
os.environ.update(COMPACT_BIOMED_ROOT=workflow.basedir)  # read by pip for environment.yml

from compact_biomed import config as cfg
from compact_biomed import gpus
from compact_biomed.io import OUTPUT_MARKER, foreign_files, unmarked_folders
from compact_biomed.ner import data as ner_data
from compact_biomed.smk import RUN_ID, prepend_pythonpath
from snakemake.exceptions import WorkflowError
from snakemake.io import is_flagged

os.environ.setdefault(RUN_ID, uuid.uuid4().hex)  # this run's jobs inherit it: see compact_biomed.smk
prepend_pythonpath(SRC)

try:  # also fills in the schema's defaults, as for the CLI
    main = workflow.is_main_process
    cfg.check(config, Path(workflow.basedir) / "config/schema.yaml", slow_checks=main, data_checks=main)
except cfg.ConfigError as error:
    raise WorkflowError(str(error)) from None

if workflow.is_main_process:
    # Snakemake deletes a folder output before its job reruns, with whatever a user put in it (and a fine-tuning
    # would refuse its folder only after training): such files stop the run before any job starts.
    foreign = foreign_files("results")
    if foreign:
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise WorkflowError(
            f"{os.path.abspath(foreign[0])}{more}: not written by the pipeline, in one of its output folders, "
            "which a rerun deletes; move it elsewhere"
        )


def workstation_cores(otherwise):
    """All the cores of a local run (--cores), else `otherwise`: on a cluster each job has its own, and without
    --cores (--report, --unlock) Snakemake has no total."""
    try:
        return workflow.cores if workflow.local_exec else otherwise
    except WorkflowError:
        return otherwise


def name_patterns(path, names):
    """Glob patterns of an output path: each wildcard in `names` replaced by each of its values, the others by *
    (a wildcard as Snakemake keeps it may carry its constraint: {student,[^/]+})."""
    parts = re.split(r"\{(\w+)(?:,[^}]*)?\}", path)  # text, wildcard, text, wildcard, ..., text
    choices = [[part] if i % 2 == 0 else names.get(part, ["*"]) for i, part in enumerate(parts)]
    return ["".join(combination) for combination in itertools.product(*choices)]


def check_folder_outputs():
    """At a folder output's path (a model, a shard), a folder the pipeline did not write (no marker) would be read
    as its output, and deleted by a rerun: it stops the run before any job starts. The Snakefile calls this once
    every rule is defined. It looks for this config's names only, as a folder of another name (a model of the
    user's kept under results/models/) is no output of this run."""
    names = {"student": TRAINED_MODELS, "pretrained": PRETRAINED_MODELS, "owner": TOKENIZER_OWNERS}
    patterns = [
        pattern
        for rule in workflow.rules
        for path in rule.output
        if is_flagged(path, "directory")
        for pattern in name_patterns(str(path), names)
    ]
    found = unmarked_folders(folder for pattern in patterns for folder in Path().glob(pattern))
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise WorkflowError(
            f"{os.path.abspath(found[0])}{more}: a folder the pipeline did not write (no {OUTPUT_MARKER}) at the "
            "path of one of its outputs, which would be read as that output and deleted by a rerun; move it elsewhere"
        )


TRAINED_MODELS = cfg.trained_models(config)  # pre-trained here from a recipe
PRETRAINED_MODELS = cfg.pretrained_models(config)  # published models, fine-tuned as they are
# The teacher (also the baseline row) and everything before pre-training exist only when a model is trained.
TEACHER = cfg.teacher_name(config)
TABLE_MODELS = cfg.table_models(config)  # the tables' rows: the teacher baseline, then the models in config order
BASELINE = TEACHER or TABLE_MODELS[0]  # the model table's speed reference
TOKENIZER_OWNERS = cfg.tokenizer_owners(config)
DATASETS = config["ner"]["datasets"]
SEEDS = config["ner"]["seeds"]
PUBMED_FILES = cfg.pubmed_names(config) if TRAINED_MODELS else []
NUM_SHARDS = config["tokenize"]["num_shards"] if TRAINED_MODELS else 0
SPLITS = ["train", "devel", "test", "train_dev"]
# Training jobs hold one GPU where there is one; the profile caps how many run at once (profiles/default: one).
# A CPU-only machine requests none, so its training jobs run side by side on the cores.
GPU_PER_JOB = 1 if shutil.which("nvidia-smi") else 0
# Several NER fine-tunings share one GPU (one alone leaves it mostly idle): each takes one of the GPU's
# `gpu_slots` (profiles/default: 8, or `--resources gpu=1 gpu_slots=K`); pre-training and model_stats take all.
# On SLURM the same sharing comes from group jobs (profiles/slurm: groups, group-components).
GPU_SLOTS = getattr(workflow.global_resources.get("gpu_slots"), "value", None) or 1
# A workstation with several GPUs (`--resources gpu=N gpu_slots=S`): each GPU job claims its own (compact_biomed.gpus);
# a whole-GPU job holds one GPU's share of the slots.
GPUS = getattr(workflow.global_resources.get("gpu"), "value", None) or 1
SLOTS_PER_GPU = max(GPU_SLOTS // GPUS, 1)  # whole: onstart refuses slots that do not divide among the GPUs


onstart:
    # Without a gpu_slots limit nothing caps the jobs on the GPU. A --resources on the command line replaces the
    # profile's whole list, so `--resources gpu=1` alone drops it. Cluster jobs get a GPU each: no limit needed.
    # Here, not at parsing: only now is the executor known (a dry run runs nothing).
    if GPU_PER_JOB and workflow.local_exec and not workflow.touch and "gpu_slots" not in workflow.global_resources:
        raise WorkflowError(
            "a GPU and no `gpu_slots` limit: NER fine-tunings would crowd the GPU without cap; "
            "pass --resources gpu=1 gpu_slots=8 (a --resources replaces the profile's list; see README)"
        )
    if GPU_PER_JOB and workflow.local_exec and not workflow.touch and GPUS > 1:
        problem = gpus.settings_problem(GPUS, GPU_SLOTS)
        if problem:
            raise WorkflowError(problem)
        # read by every job (compact_biomed.gpus)
        os.environ[gpus.ENV] = f"{GPUS} {SLOTS_PER_GPU} {gpus.lock_dir()}"


def one_of(names):
    """A wildcard constraint matching exactly these names (none: a pattern that never matches)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


wildcard_constraints:
    model=one_of(TABLE_MODELS),
    student=one_of(TRAINED_MODELS),
    pretrained=one_of(PRETRAINED_MODELS),
    owner=one_of(TOKENIZER_OWNERS),
    dataset="|".join(re.escape(d) for d in DATASETS),
    seed=r"\d+",
    shard=r"\d+",
    total=r"\d+",
    name=r"pubmed\d{2}n\d{4}",
    split="|".join(SPLITS),


def model_path(model):
    """The Hugging Face directory of a row of the tables: the teacher (baseline), a published model as
    fetched, or a model pre-trained here."""
    if model == TEACHER:
        return "results/teacher"
    return f"results/pretrained/{model}" if model in PRETRAINED_MODELS else f"results/models/{model}"


def model_dir(wildcards):
    return model_path(wildcards.model)


def tokenizer_dir(wildcards):
    return "results/teacher" if wildcards.owner == "teacher" else f"results/start/{wildcards.owner}"


def shard_dirs(owner):
    return [f"results/shards/{owner}/shard-{i:04d}-of-{NUM_SHARDS:04d}" for i in range(NUM_SHARDS)]


def local_model_files(folder):
    """A local model folder's top-level files as a rule's inputs (none for a hub row; the folder itself while it is
    missing or empty, so that Snakemake names it)."""
    if not folder:
        return []
    files = sorted(str(p) for p in Path(folder).glob("*") if p.is_file() and not p.name.startswith("."))
    return files or folder


def pubmed_source(suffix):
    """A baseline file as parse_pubmed reads it: in place in the configured local folder (no copy that could go
    stale: errors name the user's file, and a replaced file is read again), else the download."""
    folder = config["pubmed"]["local_dir"] or "results/pubmed/raw"
    return lambda wc: f"{folder}/{wc.name}{suffix}"


def parsed_pubmed_files():
    """The parsed sources the corpus merges, in order: every baseline file, or the Hugging Face dataset."""
    if config["pubmed"]["source"] == "huggingface":
        return ["results/pubmed/parsed/huggingface.parquet"]
    return expand("results/pubmed/parsed/{name}.parquet", name=PUBMED_FILES)


def corpus_if_random(source):
    """Random demo base models train their tokenizer on the corpus; hub models need no input."""
    return {"corpus": "results/pubmed/corpus.parquet"} if "random" in source else {}


def pretrain_inputs(wildcards):
    """Shards of the tokenizer the model trains on, plus the teacher or the start model."""
    owner = cfg.tokenizer_owner(config, wildcards.student)
    inputs = {"shards": shard_dirs(owner), "manifest": f"results/shards/{owner}/manifest.json"}
    if owner == "teacher":
        inputs["teacher"] = "results/teacher"
    else:
        inputs["start"] = f"results/start/{wildcards.student}"
    return inputs


def ner_split_files(wildcards):
    """The files fine-tuning reads: fetched and generated sets have all four splits; a local folder needs only
    train, test and train_dev.tsv or devel.tsv, as for the CLI (the config check found them)."""
    folder = f"{config['ner']['data_dir']}/{wildcards.dataset}"
    if cfg.dataset_source(config, wildcards.dataset) == "local":
        return [str(path) for path in ner_data.split_files(folder)]
    return expand(f"{folder}/{{split}}.tsv", split=SPLITS)
