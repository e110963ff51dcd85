"""Benchmark NER fine-tuning: the Hugging Face Trainer job (`compact_biomed.ner.finetune`) against the
hand-written loop it replaced (benchmarks/ner_loop.py), side by side in one run, on the same data and seeds.

Every measurement is a FRESH process (as each workflow job is): its training rate includes the warm-up on new
batch shapes. Rows, with random batches (the paper's) on both sides:

* loop     - the previous loop, batches padded to their longest window;
* trainer  - the Trainer job, batches padded to a multiple of 1 (exact), 8 or 64 (`pad_to_multiple_of`);
* k Trainer jobs started at once (--jobs, one or more k, a row each for every pad; default 4 on CUDA, none on
  CPU): their aggregate rate (all their training samples over the span from the first start to the last end of
  training) against one job's at the same pad.

Columns: training samples/s of the whole job, its first and last epoch's rate (first/last = warm-up cost), test
F1 in both scorings (seqeval, mean over seeds), the seconds the process took and on CUDA the most GPU memory one
job held (k jobs on one GPU need about k times it). The model is either --model-dir
or a random BERT of --shape with a WordPiece vocabulary trained offline on the training text.

    PYTHONPATH=src python benchmarks/bench_ner.py                    # CPU: tiny shape, 3 seeds, a few minutes
    PYTHONPATH=src python benchmarks/bench_ner.py --device cuda --shape bert-base --budget-s 170 --out ner.txt
"""

from __future__ import annotations

import time

PROCESS_START = time.time()  # before the heavy imports: a fresh job's cost includes them

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA_CANDIDATES = [REPO.parent / "shared" / "data" / "ner" / "BC5CDR-chem", REPO / ".devdata" / "ner" / "BC5CDR-chem"]
SHAPES = {  # layers, hidden size, heads
    "tiny": (2, 128, 4),
    "small": (4, 256, 4),
    "6x768": (6, 768, 12),
    "bert-base": (12, 768, 12),
}
RESULT = "RESULT "  # a worker's last stdout line: RESULT <json>


# ---------------------------------------------------------------------------------------------------
# Worker: one fine-tuning job in this fresh process


def worker(args) -> None:
    """Run one arm; print its metrics and the wall-clock span of its training (for the aggregate rate)."""
    import torch

    sys.path.insert(0, str(HERE))
    import ner_loop
    import transformers

    from compact_biomed.ner import finetune as ner_finetune

    span = {}

    def timed(function):
        def wrapper(*a, **k):
            span["train_start"] = time.time()
            result = function(*a, **k)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            span["train_end"] = time.time()
            return result

        return wrapper

    hp = json.loads(args.hparams)
    if args.worker == "loop":
        ner_loop.train = timed(ner_loop.train)
        metrics = ner_loop.finetune(args.model_dir, args.data_dir, args.seed, hp)
    else:
        transformers.Trainer.train = timed(transformers.Trainer.train)
        with tempfile.TemporaryDirectory() as tmp:
            metrics = ner_finetune.finetune(args.model_dir, args.data_dir, Path(tmp) / "run", args.seed, hp)
    metrics.update(
        span, process_seconds=round(time.time() - PROCESS_START, 2), samples=metrics["train_sentences"] * hp["epochs"]
    )
    if torch.cuda.is_available():  # what the job held on the GPU at most: k jobs need about k times it
        metrics["gpu_gib"] = torch.cuda.max_memory_reserved() / 2**30
    print(RESULT + json.dumps(metrics), flush=True)


def start_worker(arm: str, model_dir: Path, data_dir: Path, seed: int, hp: dict, log: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        __file__,
        "--worker",
        arm,
        "--model-dir",
        str(model_dir),
        "--data-dir",
        str(data_dir),
        "--seed",
        str(seed),
        "--hparams",
        json.dumps(hp),
    ]
    from compact_biomed.smk import prepend_pythonpath

    prepend_pythonpath(REPO / "src")  # the workers import this checkout's package
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)


def finish(process: subprocess.Popen, log: Path, timeout: float) -> dict | None:
    """The worker's metrics, or None (with its log's tail on stderr) when it failed or ran out of time."""
    try:
        process.wait(timeout=max(timeout, 1))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        print(f"worker timed out; its log {log}", file=sys.stderr)
        return None
    lines = log.read_text(errors="replace").splitlines()
    if process.returncode or not lines or not lines[-1].startswith(RESULT):
        print(f"worker failed ({process.returncode}):\n" + "\n".join(lines[-15:]), file=sys.stderr)
        return None
    return json.loads(lines[-1][len(RESULT) :])


# ---------------------------------------------------------------------------------------------------
# Driver


class Budget:
    """Wall-clock budget of the whole run: a row that would not fit is skipped, a worker past it is killed."""

    def __init__(self, seconds: float | None):
        self.seconds, self.started = seconds, time.time()

    def left(self) -> float:
        return float("inf") if self.seconds is None else self.seconds - (time.time() - self.started)


def run_group(arm: str, jobs: int, seed: int, hp: dict, ctx: dict, budget: Budget, estimate: float) -> list:
    """One run (a fresh process), or for jobs > 1 that many processes at once (seeds seed, seed+1, ...).
    Returns [their metrics], or [] when skipped for the budget (`estimate`: seconds of one job) or failed."""
    # k jobs at once take k / (their speed-up, 2-3x) of one job's time, and at least twice it
    if budget.left() < estimate * (1 if jobs == 1 else max(2, jobs / 2.5)):
        print(
            f"skipped {arm} x{jobs} pad {hp['pad_to_multiple_of']}: {budget.left():.0f} s of budget left",
            file=sys.stderr,
        )
        return []
    seeds = [seed + i for i in range(jobs)]
    logs = [ctx["tmp"] / f"{arm}-{hp['pad_to_multiple_of']}-{jobs}-{s}.log" for s in seeds]
    processes = [start_worker(arm, ctx["model_dir"], ctx["data_dir"], s, hp, log) for s, log in zip(seeds, logs)]
    results = [finish(p, log, budget.left()) for p, log in zip(processes, logs)]
    return [] if None in results else [results]


def summarise(label: str, pad: str, jobs: int, runs: list[list[dict]]) -> dict | None:
    """One table row: medians over seeds of the rates, means of the F1."""
    if not runs:
        return None
    flat = [m for group in runs for m in group]
    if jobs == 1:
        rate = statistics.median(m["train_samples_per_second"] for m in flat)
    else:  # all samples over the span of the jobs' training, per group of concurrent jobs
        rate = statistics.median(
            sum(m["samples"] for m in group)
            / (max(m["train_end"] for m in group) - min(m["train_start"] for m in group))
            for group in runs
        )
    first = statistics.median(m["epoch_samples_per_second"][0] for m in flat)
    last = statistics.median(m["epoch_samples_per_second"][-1] for m in flat)
    return {
        "label": label,
        "pad": pad,
        "jobs": jobs,
        "rate": rate,
        "first": first,
        "last": last,
        **{mode: f1_spread([m["test"][mode]["f1"] for m in flat]) for mode in ("paper", "word")},
        "process": statistics.median(m["process_seconds"] for m in flat),
        "runs": len(flat),
        "gpu_gib": max((m.get("gpu_gib", 0.0) for m in flat), default=0.0),
    }


def f1_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sd (0 for one run) of F1 over runs."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(rows: list[dict]) -> list[str]:
    lines = [
        (
            f"{'arm':<12}{'pad':>6}{'jobs':>5}{'samples/s':>11}{'epoch 1':>9}{'last ep':>9}{'1st/last':>9}"
            f"{'paper F1 (sd)':>15}{'word F1 (sd)':>15}{'proc s':>8}{'runs':>5}{'GPU GiB':>9}"
        )
    ]
    for r in rows:
        gpu = f"{r['gpu_gib']:.1f}" if r["gpu_gib"] else "-"  # the most one of its jobs held
        lines.append(
            f"{r['label']:<12}{r['pad']:>6}{r['jobs']:>5}{r['rate']:>11.1f}{r['first']:>9.1f}"
            f"{r['last']:>9.1f}{r['first'] / r['last']:>9.2f}{spread(r['paper']):>15}{spread(r['word']):>15}"
            f"{r['process']:>8.1f}{r['runs']:>5}{gpu:>9}"
        )
    return lines


def spread(mean_sd: tuple[float, float]) -> str:
    return f"{mean_sd[0]:.3f} ({mean_sd[1]:.3f})"


def ratios(rows: list[dict]) -> list[str]:
    by = {(r["label"], r["pad"], r["jobs"]): r for r in rows}
    lines = []
    loop = by.get(("loop", "exact", 1))
    for (label, pad, jobs), row in by.items():
        if label == "trainer" and jobs == 1 and loop:
            paper, word = (row[mode][0] - loop[mode][0] for mode in ("paper", "word"))
            lines.append(
                f"trainer pad {pad} / loop: {row['rate'] / loop['rate']:.2f}x samples/s, "
                f"F1 difference paper {paper:+.3f}, word {word:+.3f}"
            )
        if jobs > 1 and (label, pad, 1) in by:
            lines.append(f"{jobs} jobs at once / 1 job (pad {pad}): {row['rate'] / by[label, pad, 1]['rate']:.2f}x")
    return lines


def build_model(args, data_dir: Path, out: Path) -> Path:
    from compact_biomed.base_models import random_init
    from compact_biomed.ner import data as ner_data

    layers, hidden, heads = SHAPES[args.shape]
    train = ner_data.read_split(data_dir / "train.tsv")  # the whole split: a realistic vocabulary
    random_init(
        [" ".join(tokens) for tokens, _ in train],
        out,
        "bert",
        lowercase=False,
        vocab_size=args.vocab_size,
        seed=0,
        config={
            "num_hidden_layers": layers,
            "hidden_size": hidden,
            "num_attention_heads": heads,
            "intermediate_size": 4 * hidden,
            "max_position_embeddings": 512,
        },
    )
    return out


def data_folder(args, tmp: Path) -> Path:
    if args.data_dir:
        return args.data_dir
    for candidate in DATA_CANDIDATES:
        if candidate.exists():
            return candidate
    from compact_biomed import demo

    print("no BC5CDR-chem folder found: using generated demo data", file=sys.stderr)
    demo.write_ner_dataset(tmp / "demo-chem", "chem", seed=0, n_train=args.train_sentences, n_dev=60, n_test=300)
    return tmp / "demo-chem"


def plan(args, cuda: bool) -> list[tuple[str, int | None, int]]:
    """(arm, pad_to_multiple_of, jobs) rows in the order they run: the most important first on a budget."""
    pads = args.pad_multiples or ([64, 8] if cuda else [1])
    # each pad's 1-job row, then its k-job rows: a 1-vs-k ratio needs both from the same pad
    rows = [("trainer", pad, jobs) for pad in pads for jobs in sorted({1, *args.jobs})]
    return rows if args.no_loop else [("loop", None, 1), *rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--data-dir", type=Path, help="BioBERT-layout NER folder (default: BC5CDR-chem if present)")
    parser.add_argument("--model-dir", type=Path, help="a masked-LM model; default: a random one of --shape")
    parser.add_argument("--shape", choices=sorted(SHAPES), help="default: tiny on CPU, bert-base on CUDA")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--train-sentences", type=int, help="default: 1000 on CPU, 1500 on CUDA")
    parser.add_argument("--eval-sentences", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, help="default: 1e-3 for tiny/small, 1e-4 otherwise")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: 1 2 3 on CPU, 1 on CUDA")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per job")
    parser.add_argument("--pad-multiples", type=int, nargs="+", help="Trainer rows; default: 1 on CPU, 64 8 on CUDA")
    parser.add_argument("--no-loop", action="store_true", help="skip the hand-written loop's row (a shorter run)")
    parser.add_argument(
        "--jobs", type=int, nargs="+", help="concurrent Trainer jobs on the device, a row each; default: 4 on CUDA"
    )
    parser.add_argument("--budget-s", type=float, help="wall-clock limit of the whole run; rows that miss it skip")
    parser.add_argument("--out", type=Path, help="also write the table here")
    parser.add_argument("--worker", choices=["loop", "trainer"], help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--hparams", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    budget = Budget(args.budget_s)
    import torch
    import transformers

    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device visible")
    if not cuda:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the workers' device follows what they can see
    args.shape = args.shape or ("bert-base" if cuda else "tiny")
    args.train_sentences = args.train_sentences or (1500 if cuda else 1000)
    args.seeds = args.seeds or ([1] if cuda else [1, 2, 3])
    args.jobs = args.jobs or ([4] if cuda else [1])
    learning_rate = args.learning_rate or (1e-3 if args.shape in ("tiny", "small") else 1e-4)
    device = torch.cuda.get_device_name(0) if cuda else f"CPU, {args.threads} thread(s) per job"

    with tempfile.TemporaryDirectory(prefix="bench-ner-") as tmp:
        ctx = {"tmp": Path(tmp)}
        ctx["data_dir"] = data_folder(args, ctx["tmp"])
        ctx["model_dir"] = args.model_dir or build_model(args, ctx["data_dir"], ctx["tmp"] / "model")
        hp = {
            "learning_rate": learning_rate,
            "epochs": args.epochs,
            "warmup_ratio": 0.1,
            "max_length": 512,
            "max_train_sentences": args.train_sentences,
            "max_eval_sentences": args.eval_sentences,
            "threads": args.threads,
            "group_by_length": False,
            "logging_steps": 1000,
        }
        runs, estimate = {row: [] for row in plan(args, cuda)}, 0.0
        for seed in args.seeds:  # arms interleaved, so drifts in machine load affect them alike
            for arm, pad, jobs in runs:
                done = run_group(arm, jobs, seed, {**hp, "pad_to_multiple_of": pad}, ctx, budget, estimate)
                runs[arm, pad, jobs] += done
                if done and jobs == 1:
                    estimate = max(estimate, 1.1 * done[0][0]["process_seconds"])
        rows = [
            summarise(arm, "exact" if pad in (None, 1) else str(pad), jobs, done)
            for (arm, pad, jobs), done in runs.items()
            if done
        ]

    model = args.model_dir or f"random BERT {args.shape} ({'x'.join(map(str, SHAPES[args.shape][:2]))})"
    report = [
        (
            f"NER fine-tuning, fresh processes: {device}; torch {torch.__version__}, "
            f"transformers {transformers.__version__}"
        ),
        (
            f"{ctx['data_dir'].name}: {args.train_sentences} train sentences, {args.eval_sentences} dev/test, "
            f"{args.epochs} epochs, batch 16, lr {learning_rate:g}, random batches; {model}; seeds {args.seeds}"
        ),
        *table(rows),
        *ratios(rows),
        f"total {time.time() - budget.started:.0f} s",
    ]
    print("\n".join(report))
    if args.out:
        args.out.write_text("\n".join(report) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
