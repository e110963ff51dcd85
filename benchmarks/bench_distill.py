"""Benchmark the pre-training objectives against a straightforward implementation of the official scripts.

The reference (`reference_loss`) does what the official scripts do (spec §1.2-§1.5): full MLM heads on every
position, eager attention everywhere, `masked_select` on the full logits, torch.nn loss modules. The objective in
`compact_biomed.pretrain.recipes` computes the heads on masked rows only and uses SDPA where no attention map is needed.

For each recipe this prints: both losses on the same batch with dropout off (must agree within 1e-5), the median
training-step time of each (forward + backward + AdamW step, dropout on; steps of the two alternate so that the
load of a shared machine hits both alike) and their ratio, and the peak memory of a
step (CUDA: max_memory_allocated; CPU: sampled peak RSS growth above the level before the first step, in a fresh
subprocess per measurement).

    python benchmarks/bench_distill.py                       # default: 6x384 teacher, vocab 28996, 8 x 128 tokens
    python benchmarks/bench_distill.py --recipes distilbiobert --steps 3 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import resource
import statistics
import subprocess
import sys
import threading
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForMaskedLM

from compact_biomed.pretrain import recipes

TOLERANCE = 1e-5
# the reference reproduces the official KLDivLoss(reduction="mean") on purpose (spec §1.3)
warnings.filterwarnings("ignore", message="reduction: 'mean' divides")


# ---------------------------------------------------------------------------------------------------------------
# Reference: the official scripts' computation, written plainly
# ---------------------------------------------------------------------------------------------------------------


def _select_rows(tensor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """DistilBERT-style masked_select on a (batch, seq, dim) tensor, rows where mask (batch, seq) is true."""
    expanded = mask.unsqueeze(-1).expand_as(tensor)
    return torch.masked_select(tensor, expanded).view(-1, tensor.size(-1))


def _cosine(student_hidden, teacher_hidden, attention_mask):
    keep = attention_mask.bool()
    s, t = _select_rows(student_hidden, keep), _select_rows(teacher_hidden, keep)
    return nn.CosineEmbeddingLoss(reduction="mean")(s, t, s.new_ones(s.size(0)))


def _output_kl(s_logits, t_logits, temperature):
    return (
        nn.KLDivLoss(reduction="batchmean")(
            F.log_softmax(s_logits / temperature, dim=-1), F.softmax(t_logits / temperature, dim=-1)
        )
        * temperature**2
    )


def _attention_kl(s_att, t_att, attention_mask):
    # query rows of non-padding tokens, every head and key column; "mean" over elements (spec §1.3)
    keep = attention_mask.bool()[:, None, :, None].expand_as(s_att)
    s, t = torch.masked_select(s_att, keep), torch.masked_select(t_att, keep)
    return nn.KLDivLoss(reduction="mean")(torch.log(s + 1e-12), t + 1e-12)


def reference_loss(objective: recipes.PretrainingObjective, input_ids, attention_mask, labels):
    """(total, terms) as the official scripts compute them. `objective`'s models must use eager attention."""
    recipe, student, teacher = objective.recipe, objective.student, objective.teacher
    maps = recipe.attention_maps
    s_out = student(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        output_hidden_states=True,
        output_attentions=maps,
    )
    masked = labels > -1
    s_logits = _select_rows(s_out.logits, masked)
    if teacher is None:
        terms = {"mlm": s_out.loss}
    else:
        with torch.no_grad():
            t_out = teacher(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, output_attentions=maps
            )
        t_logits = _select_rows(t_out.logits, masked)
        layout = objective.layout
        if recipe.name == "distilbiobert":
            terms = {
                "mlm": s_out.loss,
                "ce": _output_kl(s_logits, t_logits, recipe.temperature),
                "cos": _cosine(s_out.hidden_states[-1], t_out.hidden_states[-1], attention_mask),
            }
        elif recipe.name == "compactbiobert":
            terms = {
                "mlm": s_out.loss,
                "att": sum(
                    _attention_kl(s_out.attentions[i], t_out.attentions[j], attention_mask) for i, j in layout.attention
                ),
                "hid": sum(
                    _cosine(s_out.hidden_states[i], t_out.hidden_states[j], attention_mask) for i, j in layout.hidden
                ),
                "out": _output_kl(s_logits, t_logits, recipe.temperature),
            }
        else:  # tinybiobert
            mse = nn.MSELoss()
            terms = {
                "att": sum(mse(s_out.attentions[i], t_out.attentions[j]) for i, j in layout.attention),
                "rep": sum(
                    mse(objective.fit_dense(s_out.hidden_states[i]), t_out.hidden_states[j]) for i, j in layout.hidden
                ),
                "pred": nn.CrossEntropyLoss()(
                    s_logits / recipe.temperature, F.softmax(t_logits / recipe.temperature, dim=-1)
                ),
            }
    total = sum(recipe.loss_weights[name] * value for name, value in terms.items())
    return total, terms


def eager_copy(objective: recipes.PretrainingObjective) -> recipes.PretrainingObjective:
    """The same weights with eager attention everywhere, as transformers 4.17 ran the official scripts."""
    clone = copy.deepcopy(objective)
    for model in (clone.student, clone.teacher):
        if model is not None:
            model.set_attn_implementation("eager")
    return clone


# ---------------------------------------------------------------------------------------------------------------
# Setup
# ---------------------------------------------------------------------------------------------------------------


def make_teacher(layers: int, hidden: int, heads: int, vocab: int, seq: int) -> BertForMaskedLM:
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(512, seq),
    )
    torch.manual_seed(0)
    return BertForMaskedLM(config).eval()


def tiny_student_shape(teacher_config) -> dict:
    """TinyBERT-like proportions: a third of the depth (else half), 312/768 of the width, the teacher's heads
    (attention maps are compared head by head)."""
    n, heads = teacher_config.num_hidden_layers, teacher_config.num_attention_heads
    depth = n // 3 if n % 3 == 0 else n // 2
    hidden = max(heads, round(teacher_config.hidden_size * 312 / 768 / heads) * heads)
    return {
        "num_hidden_layers": depth,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "intermediate_size": 4 * hidden,
    }


def make_objective(recipe_name: str, teacher: BertForMaskedLM) -> recipes.PretrainingObjective:
    recipe = recipes.get_recipe(recipe_name)
    torch.manual_seed(1)
    impl = recipes.attention_implementation(recipe)
    if recipe.kind == "continual":  # a start model of the distilled shape: half the teacher's depth
        student = recipes.build_student(recipes.get_recipe("distilbiobert"), teacher)
        student.set_attn_implementation(impl)
        return recipes.PretrainingObjective(recipe, student)
    teacher = copy.deepcopy(teacher)
    teacher.set_attn_implementation(impl)
    overrides = tiny_student_shape(teacher.config) if recipe.name == "tinybiobert" else None
    return recipes.PretrainingObjective(recipe, recipes.build_student(recipe, teacher, overrides), teacher)


def make_batch(vocab: int, batch: int, seq: int, mlm_probability: float = 0.15, seed: int = 0):
    """Random token ids, ragged lengths (padding), 15% of the real non-special tokens masked."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(seq // 2, seq + 1, (batch,), generator=g)
    lengths[0] = seq
    attention_mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    input_ids = torch.randint(5, vocab, (batch, seq), generator=g) * attention_mask
    special = (torch.arange(seq)[None, :] == 0) | (torch.arange(seq)[None, :] == lengths[:, None] - 1)
    candidates = attention_mask.bool() & ~special
    masked = (torch.rand((batch, seq), generator=g) < mlm_probability) & candidates
    labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
    input_ids = torch.where(masked, torch.full_like(input_ids, 4), input_ids)  # 4 = [MASK]-like id
    return input_ids, attention_mask, labels


# ---------------------------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------------------------


def check_losses(recipe_name: str, teacher, batch) -> dict:
    """Both implementations on the same batch, dropout off: total and every term."""
    fast = make_objective(recipe_name, teacher).eval()
    slow = eager_copy(fast).eval()
    with torch.no_grad():
        out = fast(*batch)
        ref_total, ref_terms = reference_loss(slow, *batch)
    diffs = {name: abs(out["terms"][name].item() - ref_terms[name].item()) for name in ref_terms}
    return {
        "loss": out["loss"].item(),
        "reference_loss": ref_total.item(),
        "abs_diff": abs(out["loss"].item() - ref_total.item()),
        "term_abs_diff": diffs,
    }


def training_step(recipe_name: str, impl: str, teacher, batch, device: str):
    """A closure running one forward + backward + AdamW step of `impl` ("fast" or "reference")."""
    objective = make_objective(recipe_name, teacher)
    if impl == "reference":
        objective = eager_copy(objective)
    objective.to(device).train()
    batch = [t.to(device) for t in batch]
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = objective(*batch)["loss"] if impl == "fast" else reference_loss(objective, *batch)[0]
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def time_interleaved(recipe_name: str, teacher, batch, steps: int, device: str) -> dict:
    """Median step seconds of both implementations, alternating steps so that a shared machine's load
    fluctuations hit both alike."""
    runs = {impl: training_step(recipe_name, impl, teacher, batch, device) for impl in ("fast", "reference")}
    times = {impl: [] for impl in runs}
    for impl, step in runs.items():
        step()  # warm-up
    for _ in range(steps):
        for impl, step in runs.items():
            start = time.perf_counter()
            step()
            times[impl].append(time.perf_counter() - start)
    return {impl: statistics.median(values) for impl, values in times.items()}


def peak_memory(recipe_name: str, impl: str, teacher, batch, steps: int, device: str) -> dict:
    """Peak memory (bytes) of a warm-up step plus `steps` steps."""
    step = training_step(recipe_name, impl, teacher, batch, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:  # includes the first step: optimizer state is part of a step's footprint
        for _ in range(1 + steps):
            step()
    if device == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(), "cuda max_memory_allocated"
    else:
        peak, kind = rss.peak_growth, "cpu peak RSS above the RSS before the first step (sampled every ms)"
    return {"peak_bytes": peak, "memory_kind": kind}


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread (torch ops release the GIL)."""

    def __init__(self, interval: float = 0.001):
        self.interval, self.peak_growth = interval, 0
        self._stop = threading.Event()

    @staticmethod
    def current() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize()

    def _sample(self):
        while not self._stop.is_set():
            self.peak_growth = max(self.peak_growth, self.current() - self.baseline)
            time.sleep(self.interval)

    def __enter__(self):
        gc.collect()
        self.baseline = self.current()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_growth = max(self.peak_growth, self.current() - self.baseline)


def measure_in_subprocess(args, recipe_name: str, impl: str) -> dict:
    """The CPU allocator keeps freed memory mapped: one fresh process per measurement keeps them independent."""
    cmd = [sys.executable, __file__, "--worker", recipe_name, impl] + shared_cli(args)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def shared_cli(args) -> list[str]:
    return [
        "--layers",
        str(args.layers),
        "--hidden",
        str(args.hidden),
        "--heads",
        str(args.heads),
        "--vocab",
        str(args.vocab),
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--memory-steps",
        str(args.memory_steps),
        "--threads",
        str(args.threads),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=list(recipes.RECIPES))
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--vocab", type=int, default=28996)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--steps", type=int, default=7, help="timed steps per implementation (interleaved)")
    parser.add_argument("--memory-steps", type=int, default=2, help="steps after the first for peak memory")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--worker", nargs=2, metavar=("RECIPE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    teacher = make_teacher(args.layers, args.hidden, args.heads, args.vocab, args.seq)
    batch = make_batch(args.vocab, args.batch, args.seq)

    if args.worker:
        print(json.dumps(peak_memory(*args.worker, teacher, batch, args.memory_steps, device)))
        return 0

    print(
        f"teacher {args.layers}x{args.hidden}, vocab {args.vocab}, batch {args.batch}x{args.seq}, "
        f"{int(batch[2].ne(-100).sum())} masked positions, device {device}, torch threads "
        f"{torch.get_num_threads()}"
    )
    header = (
        f"{'recipe':<16}{'loss':>11}{'reference':>11}{'|diff|':>10}{'step s':>9}{'ref s':>9}{'speedup':>9}"
        f"{'peak MB':>10}{'ref MB':>10}"
    )
    print(header)
    results, ok = {}, True
    for name in args.recipes:
        check = check_losses(name, teacher, batch)
        seconds = time_interleaved(name, teacher, batch, args.steps, device)
        if device == "cuda":
            fast, slow = (
                peak_memory(name, impl, teacher, batch, args.memory_steps, device) for impl in ("fast", "reference")
            )
        else:
            fast, slow = (measure_in_subprocess(args, name, impl) for impl in ("fast", "reference"))
        speedup = seconds["reference"] / seconds["fast"]
        results[name] = {
            **check,
            "step_seconds": seconds,
            "speedup": speedup,
            "peak_bytes": {"fast": fast["peak_bytes"], "reference": slow["peak_bytes"]},
        }
        ok &= check["abs_diff"] <= TOLERANCE and all(d <= TOLERANCE for d in check["term_abs_diff"].values())
        print(
            f"{name:<16}{check['loss']:>11.6f}{check['reference_loss']:>11.6f}{check['abs_diff']:>10.1e}"
            f"{seconds['fast']:>9.3f}{seconds['reference']:>9.3f}{speedup:>8.2f}x"
            f"{fast['peak_bytes'] / 2**20:>10.0f}{slow['peak_bytes'] / 2**20:>10.0f}",
            flush=True,
        )
    print(f"memory: {fast['memory_kind']}; losses agree within {TOLERANCE:g}: {'yes' if ok else 'NO'}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"config": vars(args), "device": device, "results": results}, fh, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
