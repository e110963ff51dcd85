"""Pre-training speed of the six compact models: the pipeline's own training step against the official computation.

"ours" is the pipeline's step (compact_biomed.pretrain: train's TrainingArguments and Trainer, data's collator,
micro_batch's choice; recipes: objective with MLM heads on masked rows, SDPA where no attention map is needed;
bf16 where the GPU has it). "official" is the computation of the official scripts on the same Trainer and data:
fp32, full-vocabulary MLM heads, eager attention everywhere (bench_distill.reference_loss), non-fused AdamW and a
micro-batch of 24 accumulated to the global 192. With --compile, "compiled" is ours with the train setting `compile`
(train.compile_objective: torch.compile of the objective), timed beside it; with --packing, "packed" is ours with the
train setting `packing` (data.pack_rows: citations several to a row, less padding computed) for the models that
allow it (recipes.packs_rows), and with both flags "compiled+packed" has the two settings.

Random weights at the paper's shapes: a BioBERT-shaped teacher (12 layers, 768, vocabulary 28,996), students per
config/paper.yaml (6-layer halves of the teacher, TinyBERT 4L-312D), continual start points shaped like
distilbert-base-cased, TinyBERT_General_4L_312D and mobilebert-uncased. Synthetic shards with PubMed-like lengths:
a quarter title-only citations (10-40 tokens), the rest abstracts, most truncated at 256.

Per model and implementation: optimizer steps/s after a warm-up, TFLOP per step (counted by torch's FlopCounterMode
on a warm-up step), achieved TFLOP/s and its share of a bf16 matrix-product peak measured on the same device in the
same run, peak memory (CUDA), GPU-hours for the paper's steps (100k distillation, 200k continual); then ours
against official (and the speed settings against ours) as ratios; the untimed warm-up steps' seconds are printed
apart (for the compiled rows: the compilation), and any graph compiled during the timed steps is named. All feed
the Trainer through the pipeline's collator; its time to collate one global batch is printed beside HF's
(tokenizer.pad). No `datasets` package needed.

    PYTHONPATH=src python benchmarks/bench_pretrain.py --device cuda --out pretrain_bench.txt   # paper shapes
    PYTHONPATH=src python benchmarks/bench_pretrain.py --shape tiny                             # CPU, seconds
    PYTHONPATH=src python benchmarks/bench_pretrain.py --device cuda --compile --no-official --warmup 5
    PYTHONPATH=src python benchmarks/bench_pretrain.py --device cuda --compile --packing --no-official --warmup 6
    PYTHONPATH=src python benchmarks/bench_pretrain.py --device cuda --impls compiled+packed --models DistilBioBERT --profile 5
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertTokenizer,
    DataCollatorForLanguageModeling,
    DistilBertConfig,
    MobileBertConfig,
    TrainerCallback,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_distill import reference_loss

from compact_biomed.config import schema_defaults
from compact_biomed.pretrain import TrainSettings, recipes
from compact_biomed.pretrain import train as pretrain
from compact_biomed.pretrain.data import IndexedExamples, ReproducibleMaskingCollator
from compact_biomed.pretrain.micro_batch import choose_micro_batch

PAPER_STEPS = {"distillation": 100_000, "continual": 200_000}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# ---------------------------------------------------------------------------------------------------------------
# Shapes: the paper's, and a tiny one for CI on a CPU
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Shape:
    teacher: BertConfig
    tiny_student: dict  # TinyBioBERT's student
    starts: dict  # continual model -> config of its start model
    max_length: int
    global_batch: int
    official_micro_batch: int


def paper_shape() -> Shape:
    return Shape(
        teacher=BertConfig(
            vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
        ),
        tiny_student=dict(recipes.TINYBERT_4L_312D),
        starts={
            "BioDistilBERT": DistilBertConfig(vocab_size=28996),  # distilbert-base-cased
            "BioTinyBERT": BertConfig(vocab_size=30522, **recipes.TINYBERT_4L_312D),
            "BioMobileBERT": MobileBertConfig(),
        },  # its defaults are mobilebert-uncased
        max_length=256,
        global_batch=192,
        official_micro_batch=24,
    )


def tiny_shape() -> Shape:
    small = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    return Shape(
        teacher=BertConfig(vocab_size=1000, **{**small, "num_hidden_layers": 4}),
        tiny_student={**small, "hidden_size": 16, "intermediate_size": 32},
        starts={
            "BioDistilBERT": DistilBertConfig(vocab_size=1000, n_layers=2, dim=32, n_heads=4, hidden_dim=64),
            "BioTinyBERT": BertConfig(vocab_size=1000, **small),
            "BioMobileBERT": MobileBertConfig(
                vocab_size=1000,
                num_hidden_layers=2,
                hidden_size=32,
                embedding_size=16,
                true_hidden_size=16,
                intra_bottleneck_size=16,
                intermediate_size=32,
                num_attention_heads=2,
                num_feedforward_networks=2,
            ),
        },
        max_length=32,
        global_batch=8,
        official_micro_batch=2,
    )


MODELS = {  # the paper's table order: model -> recipe
    "DistilBioBERT": "distilbiobert",
    "CompactBioBERT": "compactbiobert",
    "TinyBioBERT": "tinybiobert",
    "BioDistilBERT": "continual_mlm",
    "BioTinyBERT": "continual_mlm",
    "BioMobileBERT": "continual_mlm",
}


# ---------------------------------------------------------------------------------------------------------------
# Synthetic data and models
# ---------------------------------------------------------------------------------------------------------------


class SyntheticShard:
    """Rows as a tokenised shard serves them (`rows[indices]` -> columns), PubMed-like lengths, random tokens."""

    def __init__(self, rows: int, max_length: int, vocab_size: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        title_only = rng.random(rows) < 0.25
        lengths = np.where(title_only, rng.integers(10, 41, rows), rng.normal(330, 120, rows).astype(int))
        self.lengths = np.clip(lengths, 8, max_length)
        self.ids = rng.integers(len(SPECIAL), vocab_size, (rows, max_length))

    def __len__(self):
        return len(self.lengths)

    def __getitem__(self, indices):
        ids, special = [], []
        for index in indices:
            n = int(self.lengths[index])
            ids.append([2, *self.ids[index, : n - 2].tolist(), 3])  # [CLS] text [SEP]
            special.append([1] + [0] * (n - 2) + [1])
        return {"input_ids": ids, "special_tokens_mask": special}


def tokenizer_of(vocab_size: int) -> BertTokenizer:
    """A WordPiece tokenizer with the model's vocabulary size: the collator needs its special ids and length."""
    words = SPECIAL + [f"w{i}" for i in range(vocab_size - len(SPECIAL))]
    return BertTokenizer(vocab={word: i for i, word in enumerate(words)})


def packable(model: str, shape: Shape) -> bool:
    """Whether the train setting `packing` applies to `model` (recipes.packs_rows): students and teacher are BERTs
    but for the continual models' start architectures."""
    recipe = recipes.get_recipe(MODELS[model])
    return recipes.packs_rows(recipe, [shape.starts[model].model_type if model in shape.starts else "bert"])


def build_objective(model: str, shape: Shape, official: bool, device: str) -> recipes.PretrainingObjective:
    """The pipeline's objective for `model` on `device`, random weights; official: eager attention everywhere."""
    recipe = recipes.get_recipe(MODELS[model])
    impl = "eager" if official else recipes.attention_implementation(recipe)
    torch.manual_seed(0)
    with torch.device(device):
        if recipe.kind == "continual":
            try:
                student = AutoModelForMaskedLM.from_config(shape.starts[model], attn_implementation=impl)
            except ValueError:  # no SDPA for this architecture: transformers' choice, as recipes.load_start_model
                student = AutoModelForMaskedLM.from_config(shape.starts[model])
            return recipes.PretrainingObjective(recipe, student)
        teacher = AutoModelForMaskedLM.from_config(shape.teacher, attn_implementation=impl).requires_grad_(False)
        student = recipes.build_student(recipe, teacher, shape.tiny_student if recipe.name == "tinybiobert" else None)
        if official:
            student.set_attn_implementation("eager")
        return recipes.PretrainingObjective(recipe, student, teacher)


# ---------------------------------------------------------------------------------------------------------------
# One timed training run
# ---------------------------------------------------------------------------------------------------------------


class OfficialTrainer(pretrain.PretrainTrainer):
    """The same Trainer computing the official scripts' loss: full-vocabulary heads, masked_select, nn losses."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return reference_loss(model, inputs["input_ids"], inputs["attention_mask"], inputs["labels"])[0]


def counting(trainer_class):
    """`trainer_class` counting the FLOPs of its first optimizer step (all micro-batches, forward + backward)."""

    class Counting(trainer_class):
        flops = 0

        def training_step(self, *args, **kwargs):
            if self.state.global_step > 0:
                return super().training_step(*args, **kwargs)
            with FlopCounterMode(display=False) as counter:
                loss = super().training_step(*args, **kwargs)
            self.flops += counter.get_total_flops()
            return loss

    return Counting


def graphs_compiled() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


class StepTimer(TrainerCallback):
    """Times the steps after `warmup`, stopping after `steps` of them or once `seconds` have passed (waiting for the
    GPU where the timing starts and where it ends only, as the training runs); also the warm-up steps' seconds and
    the graphs torch.compile compiled during the timed steps. With `profile` > 0, then records that many more steps
    with torch.profiler (untimed: the profiler slows them)."""

    def __init__(self, warmup: int, steps: int, seconds: float, device: str, profile: int = 0):
        self.warmup, self.steps, self.seconds, self.device = warmup, steps, seconds, device
        self.start, self.timed, self.elapsed = None, 0, 0.0
        self.began, self.warmup_seconds, self.graphs, self.graphs_timed = None, 0.0, 0, 0
        self.profile, self.profiler, self.profiled_from, self.profiled = profile, None, 0, 0
        self.profile_began, self.profile_wall = 0.0, 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.began = self._now()

    def _now(self) -> float:
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.profiler is not None:
            if not self.profiled and state.global_step - self.profiled_from >= self.profile:
                self.profile_wall = self._now() - self.profile_began  # the profiler still records: its kernels end
                self.profiler.stop()
                self.profiled = state.global_step - self.profiled_from
                control.should_training_stop = True
        elif state.global_step == self.warmup:
            self.start = self._now()
            self.warmup_seconds, self.graphs = self.start - self.began, graphs_compiled()
        elif state.global_step > self.warmup:
            # no wait for the GPU at each step: the pipeline's training never waits, and a wait per step left the GPU
            # idle while the host prepared the next one. The host's clock runs ahead of the GPU by the steps queued:
            # the last timed step waits for them before its time is read
            timed = state.global_step - self.warmup
            if timed >= self.steps or (timed >= 2 and time.perf_counter() - self.start >= self.seconds):
                self.timed, self.elapsed = timed, self._now() - self.start
                self.graphs_timed = graphs_compiled() - self.graphs
                control.should_training_stop = self.profile == 0
                if self.profile:
                    self._start_profiler(state.global_step)

    def _start_profiler(self, step: int) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self.profiler, self.profiled_from = torch.profiler.profile(activities=activities), step
        self.profiler.start()
        self.profile_began = time.perf_counter()


# host calls that wait for the GPU: a data-dependent shape (boolean index, nonzero) or a value read on the host
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def profile_summary(events, steps: int, wall_s: float, device: str, top: int = 12) -> dict:
    """Per profiled step: wall ms, the ms the device spent in its own work (CUDA: kernels, copies; a CPU: the ops'
    own time), the host's waits for the GPU, and the `top` kernels (or CPU ops) by their own time."""
    on_device = device == "cuda"
    own = [
        e
        for e in events
        if not e.is_user_annotation
        and (e.device_type == DeviceType.CUDA if on_device else e.device_type == DeviceType.CPU)
        and not e.key.startswith(("cuda", "ProfilerStep"))
    ]
    own_us = (lambda e: e.self_device_time_total) if on_device else (lambda e: e.self_cpu_time_total)
    total_us = sum(own_us(e) for e in own)
    # minus StepTimer's own synchronize at the end of the profiled steps
    waits = sum(e.count for e in events if e.key in SYNC_CALLS) - int(on_device)
    ranked = sorted(own, key=own_us, reverse=True)[:top]
    return {
        "steps": steps,
        "wall_ms": 1000 * wall_s / steps,
        "busy_ms": total_us / 1000 / steps,
        "waits": waits / steps if on_device else None,
        "top": [(e.key, e.count / steps, own_us(e) / 1000 / steps, 100 * own_us(e) / max(total_us, 1)) for e in ranked],
    }


def run_once(model: str, shape: Shape, impl: str, args, rows: SyntheticShard, tokenizer) -> dict:
    """One timed training run of `model`; impl: ours, compiled (ours with `compile`), packed (ours with `packing`),
    compiled+packed or official."""
    official = impl == "official"
    objective = build_objective(model, shape, official, args.device)
    train = TrainSettings(  # the schema's train_defaults, but the shapes and the timed steps
        **{
            **schema_defaults("train_defaults"),
            "max_steps": args.warmup + args.steps + args.profile,
            "global_batch_size": shape.global_batch,
            "per_device_batch_size": shape.official_micro_batch if official else "auto",
            "learning_rate": 1e-4,
            "save_steps": 0,
            "logging_steps": 10**9,
            "precision": "fp32" if official else "auto",
            "dataloader_workers": args.workers,
            "compile": "compiled" in impl,
            "packing": "packed" in impl,
        }
    )
    train = dataclasses.replace(
        train, per_device_batch_size=choose_micro_batch(train, objective, shape.max_length, len(tokenizer))
    )
    if train.compile:  # as train_and_export: after the micro-batch probe
        pretrain.compile_objective(objective)
    timer = StepTimer(args.warmup, args.steps, args.seconds, args.device, args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        training_args = pretrain.training_arguments(train, tmp, seed=0)
        if official:  # transformers 4.17's Trainer had no fused AdamW
            training_args = dataclasses.replace(training_args, optim="adamw_torch")
        trainer_class = OfficialTrainer if official else pretrain.PretrainTrainer
        # FlopCounterMode does not see inside a compiled graph: a compiled run takes its eager twin's count (main)
        trainer = (trainer_class if train.compile else counting(trainer_class))(
            model=objective,
            args=training_args,
            train_dataset=IndexedExamples(rows),
            processing_class=tokenizer,
            callbacks=[timer],
            data_collator=pretrain.masking_collator(tokenizer, train, objective, 0, training_args.device),
        )
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        loss = trainer.train().training_loss
        peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else None
    result = {
        "model": model,
        "impl": impl,
        "micro_batch": train.per_device_batch_size,
        "accumulation": training_args.gradient_accumulation_steps,
        "steps_per_s": timer.timed / timer.elapsed,
        "tflop_per_step": None if train.compile else trainer.flops / 1e12,
        "peak_gib": peak / 2**30 if peak is not None else None,
        "warmup_s": timer.warmup_seconds,
        "loss": loss,
        "graphs_timed": timer.graphs_timed if train.compile else 0,
    }
    if timer.profiled:
        events = timer.profiler.key_averages()
        result["profile"] = profile_summary(events, timer.profiled, timer.profile_wall, args.device)
    del trainer, objective
    if train.compile:
        torch._dynamo.reset()  # the next model compiles afresh
    gc.collect()
    if args.device == "cuda":
        torch.cuda.empty_cache()
    return result


# ---------------------------------------------------------------------------------------------------------------
# Matrix-product peak and the table
# ---------------------------------------------------------------------------------------------------------------


def matmul_peak_tflops(device: str, sizes: list[int], repeats: int) -> float:
    """The best bf16 (n x n) @ (n x n) rate over `sizes`, median of `repeats` timed products after a warm-up."""
    best = 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
        times = []
        for i in range(repeats + 2):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            a @ b
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - start)
        best = max(best, 2 * n**3 / statistics.median(times) / 1e12)
    return best


def collate_ms(tokenizer, rows: SyntheticShard, batch: int, repeats: int = 5) -> dict[str, float]:
    """Median milliseconds to collate one global batch in one process: the pipeline's collator against HF's
    (tokenizer.pad, then the same masking), alternating."""
    ours = ReproducibleMaskingCollator(tokenizer, 0.15, 0)
    reference = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    examples = IndexedExamples(rows)
    times = {"ours": [], "hf": []}
    for i in range(repeats):
        indices = list(range(i * batch, (i + 1) * batch))
        for name, collate in (("ours", ours), ("hf", reference)):
            items = examples.__getitems__(indices)
            if name == "hf":
                items = [{k: v for k, v in item.items() if k != "example_index"} for item in items]
                reference.generator = ours.masking_generator(indices)
            start = time.perf_counter()
            collate(items)
            times[name].append(1000 * (time.perf_counter() - start))
    return {name: statistics.median(values) for name, values in times.items()}


IMPLS = ("ours", "compiled", "packed", "compiled+packed", "official")
EAGER_TWIN = {"compiled": "ours", "compiled+packed": "packed"}  # the same computation, not compiled
COLUMNS = [
    "model",
    "impl",
    "micro x accum",
    "steps/s",
    "TFLOP/step",
    "TFLOP/s",
    "% peak",
    "peak GiB",
    "GPU-h paper",
    "warm-up s",
    "mean loss",
]


def table_rows(results: list[dict], peak: float) -> list[list[str]]:
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["model"], r["impl"], r["error"]] + ["-"] * (len(COLUMNS) - 3))
            continue
        counted = r["tflop_per_step"] is not None  # a compiled run without ours' count: unknown
        tflops = r["tflop_per_step"] * r["steps_per_s"] if counted else None
        hours = PAPER_STEPS[recipes.get_recipe(MODELS[r["model"]]).kind] / r["steps_per_s"] / 3600
        rows.append(
            [
                r["model"],
                r["impl"],
                f"{r['micro_batch']} x {r['accumulation']}",
                f"{r['steps_per_s']:.3g}",
                f"{r['tflop_per_step']:.3g}" if counted else "-",
                f"{tflops:.3g}" if counted else "-",
                f"{100 * tflops / peak:.1f}" if counted else "-",
                "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f}",
                f"{hours:.3g}",
                f"{r['warmup_s']:.3g}",
                f"{r['loss']:.4f}",
            ]
        )
    return rows


RATIO_COLUMNS = [
    "model",
    "speed ours/official",
    "memory official/ours",
    "GPU-h ours",
    "GPU-h official",
    "speed compiled/ours",
    "speed packed/ours",
    "speed compiled+packed/ours",
]


def ratio_rows(results: list[dict]) -> list[list[str]]:
    """Per model with an "ours" row: against official and the speed settings where those ran ("-" where not)."""
    by_model = {}
    for r in results:
        if "error" not in r:
            by_model.setdefault(r["model"], {})[r["impl"]] = r
    rows = []
    for model, runs in by_model.items():
        if "ours" not in runs or set(runs) == {"ours"}:
            continue
        ours, official = runs["ours"], runs.get("official")
        steps = PAPER_STEPS[recipes.get_recipe(MODELS[model]).kind]
        memory = "-" if not official or ours["peak_gib"] is None else f"{official['peak_gib'] / ours['peak_gib']:.2f}"
        rows.append(
            [
                model,
                f"{ours['steps_per_s'] / official['steps_per_s']:.2f}" if official else "-",
                memory,
                f"{steps / ours['steps_per_s'] / 3600:.3g}",
                f"{steps / official['steps_per_s'] / 3600:.3g}" if official else "-",
                *(
                    f"{runs[impl]['steps_per_s'] / ours['steps_per_s']:.2f}" if impl in runs else "-"
                    for impl in ("compiled", "packed", "compiled+packed")
                ),
            ]
        )
    return rows


def markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def report(results: list[dict], peak: float, collate: dict, shape: Shape, device: str, seconds: float) -> str:
    order = {(model, impl): i for i, (model, impl) in enumerate((m, i) for m in MODELS for i in IMPLS)}
    results = sorted(results, key=lambda r: order[(r["model"], r["impl"])])
    device_name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return (
        f"# Pre-training step, {device_name}, torch {torch.__version__}; global batch {shape.global_batch}, "
        f"sequences <= {shape.max_length}, teacher {shape.teacher.num_hidden_layers}L/{shape.teacher.hidden_size}"
        f", vocab {shape.teacher.vocab_size}\n"
        f"# bf16 matmul peak measured here: {peak:.3g} TFLOP/s; TFLOP/step counted on the first step; GPU-h for "
        f"{PAPER_STEPS['distillation']:,} distillation / {PAPER_STEPS['continual']:,} continual steps; "
        f"wall {seconds:.0f} s; warm-up s: the untimed first steps (compiled rows: the compilation); mean loss: "
        f"of all the run's steps, the same data for every impl (the speed settings against ours: equal but for "
        f"dropout)\n"
        f"# collating one global batch in one process: {collate['ours']:.1f} ms (HF tokenizer.pad: "
        f"{collate['hf']:.1f} ms, {collate['hf'] / collate['ours']:.1f}x)\n\n"
        + markdown(COLUMNS, table_rows(results, peak))
        + "\n"
        + markdown(RATIO_COLUMNS, ratio_rows(results))
        + "".join(profile_section(r, device) for r in results if "profile" in r)
    )


def profile_section(result: dict, device: str) -> str:
    """--profile: where one run's step time went."""
    p = result["profile"]
    own = "kernels and copies" if device == "cuda" else "the ops' own CPU time"
    waits = "" if p["waits"] is None else f"; {p['waits']:.3g} host synchronisations with the GPU"
    rows = [[name[:90], f"{calls:.3g}", f"{ms:.3g}", f"{share:.1f}"] for name, calls, ms, share in p["top"]]
    return (
        f"\n## Profile: {result['model']} {result['impl']}, {p['steps']} steps after the timed ones\n"
        f"Per step: {p['wall_ms']:.3g} ms wall, {p['busy_ms']:.3g} ms in {own} "
        f"({100 * p['busy_ms'] / p['wall_ms']:.0f}% of the wall){waits}.\n\n"
        + markdown(["kernel" if device == "cuda" else "op", "calls/step", "ms/step", f"% of {own}"], rows)
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--shape", choices=["paper", "tiny"], help="default: paper on cuda, tiny on cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--no-official", action="store_true", help="skip the official-computation baseline")
    parser.add_argument("--compile", action="store_true", help="also time ours with the train setting `compile`")
    parser.add_argument("--packing", action="store_true", help="also time ours with the train setting `packing`")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (the first counts the FLOPs)")
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps at most per run")
    parser.add_argument("--seconds", type=float, default=3.0, help="stop timing a run after this (>= 2 steps)")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        help="then profile this many steps per run: where the step's time goes (they count in the mean loss and the "
        "learning-rate schedule: compare losses between runs with the same --profile)",
    )
    parser.add_argument("--budget", type=float, help="start no run after this many seconds (the rest: skipped)")
    parser.add_argument("--workers", type=int, help="dataloader workers (default: 4 on cuda, 0 on cpu)")
    parser.add_argument(
        "--global-batch",
        type=int,
        help="a smaller global batch for a quick check (official micro-batch: an eighth of it, as 24 of 192)",
    )
    parser.add_argument(
        "--impls",
        nargs="+",
        choices=IMPLS,
        help="time these rows only, in this order (default: ours, then the rows the flags above add)",
    )
    parser.add_argument("--out", help="also write the tables to this file (rewritten after every run)")
    args = parser.parse_args(argv)
    shape = paper_shape() if (args.shape or ("paper" if args.device == "cuda" else "tiny")) == "paper" else tiny_shape()
    if args.global_batch:
        shape = dataclasses.replace(
            shape, global_batch=args.global_batch, official_micro_batch=max(1, args.global_batch // 8)
        )
    args.workers = args.workers if args.workers is not None else (4 if args.device == "cuda" else 0)
    began = time.perf_counter()

    peak = matmul_peak_tflops(args.device, [4096, 8192] if args.device == "cuda" else [256], 10)
    data, results = {}, []
    vocab_size = shape.teacher.vocab_size
    data[vocab_size] = (
        tokenizer_of(vocab_size),
        SyntheticShard((args.warmup + args.steps) * shape.global_batch, shape.max_length, vocab_size),
    )
    collate = collate_ms(*data[vocab_size], shape.global_batch, repeats=min(5, args.warmup + args.steps))
    # every model of ours first: if time runs out, the pipeline's own rows are complete
    impls = ["ours"] + ["compiled"] * args.compile + ["packed"] * args.packing
    impls += ["compiled+packed"] * (args.compile and args.packing) + ["official"] * (not args.no_official)
    impls = args.impls or impls
    for impl in impls:
        for model in args.models:
            if "packed" in impl and not packable(model, shape):
                continue  # its training would be ours'
            vocab_size = shape.starts.get(model, shape.teacher).vocab_size
            if vocab_size not in data:
                data[vocab_size] = (
                    tokenizer_of(vocab_size),
                    SyntheticShard((args.warmup + args.steps) * shape.global_batch, shape.max_length, vocab_size),
                )
            result = {"model": model, "impl": impl}
            if args.budget is not None and time.perf_counter() - began > args.budget:
                result["error"] = "skipped: time budget spent"
            else:
                try:
                    tokenizer, rows = data[vocab_size]
                    result = run_once(model, shape, impl, args, rows, tokenizer)
                except Exception as error:  # noqa: BLE001  (one failed run, whatever the error, must not lose the others' rows)
                    first_line = (str(error).splitlines() or [""])[0][:80]
                    result["error"] = f"failed: {type(error).__name__}: {first_line}"
                    gc.collect()
                    if args.device == "cuda":
                        torch.cuda.empty_cache()
            if impl in EAGER_TWIN and "error" not in result:  # the same computation as its eager twin
                twin = [r for r in results if (r["model"], r["impl"]) == (model, EAGER_TWIN[impl]) and "error" not in r]
                result["tflop_per_step"] = twin[0]["tflop_per_step"] if twin else None
            results.append(result)
            outcome = result.get("error") or f"{result['steps_per_s']:.3g} steps/s"
            if result.get("graphs_timed"):
                outcome += f", {result['graphs_timed']} graph(s) compiled during the timed steps"
            print(
                f"{model} {result['impl']}: {outcome} ({time.perf_counter() - began:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            text = report(results, peak, collate, shape, args.device, time.perf_counter() - began)
            if args.out:
                Path(args.out).write_text(text)

    print(text)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
