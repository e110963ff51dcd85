"""benchmarks/bench_pretrain.py at a tiny shape on the CPU: every model, both implementations, the full table."""

import re
import shutil
from types import SimpleNamespace

import pytest
import torch
from conftest import load_benchmark

torch.set_num_threads(1)


def table(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header starts with `header`, cells stripped."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header}"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [rows[0]] + rows[2:]  # without the |---| rule


def test_benchmark_runs_every_model_against_the_official_computation(tmp_path):
    bench = load_benchmark("bench_pretrain")
    out = tmp_path / "bench.txt"
    assert (
        bench.main(
            ["--device", "cpu", "--shape", "tiny", "--warmup", "2", "--steps", "2", "--seconds", "0", "--out", str(out)]
        )
        == 0
    )
    text = out.read_text()
    assert "bf16 matmul peak measured here" in text

    steps = table(text, "model | impl")
    assert steps[0] == bench.COLUMNS
    assert [(row[0], row[1]) for row in steps[1:]] == [
        (model, impl) for model in bench.MODELS for impl in ("ours", "official")
    ]
    for row in steps[1:]:
        micro, accumulation = map(int, row[2].split(" x "))
        assert micro * accumulation == 8  # the tiny shape's global batch
        assert (micro, accumulation) == ((2, 4) if row[1] == "official" else (8, 1))
        assert float(row[3]) > 0 and float(row[4]) > 0 and row[7] == "-"  # no CUDA peak memory on a CPU
        assert float(row[8]) > 0

    ratios = table(text, "model | speed")
    assert ratios[0] == bench.RATIO_COLUMNS
    assert [row[0] for row in ratios[1:]] == list(bench.MODELS)
    for row in ratios[1:]:
        assert float(row[1]) > 0 and float(row[3]) > 0 and float(row[4]) > 0


def test_a_failed_run_becomes_a_row_and_the_others_are_kept(tmp_path, monkeypatch):
    bench = load_benchmark("bench_pretrain")
    build = bench.build_objective

    def broken_for_compact(model, *args):
        if model == "CompactBioBERT":
            raise RuntimeError("CUDA out of memory\nmore detail")
        return build(model, *args)

    monkeypatch.setattr(bench, "build_objective", broken_for_compact)
    out = tmp_path / "bench.txt"
    argv = [
        "--device",
        "cpu",
        "--shape",
        "tiny",
        "--models",
        "BioTinyBERT",
        "CompactBioBERT",
        "--no-official",
        "--warmup",
        "2",
        "--steps",
        "2",
        "--seconds",
        "0",
        "--out",
        str(out),
    ]
    assert bench.main(argv) == 1
    rows = {row[0]: row for row in table(out.read_text(), "model | impl")[1:]}
    assert rows["CompactBioBERT"][2] == "failed: RuntimeError: CUDA out of memory"
    assert float(rows["BioTinyBERT"][3]) > 0


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("g++"), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_arms_beside_their_eager_twins_with_the_same_losses(tmp_path):
    """--compile: a "compiled" row per model, its compile time apart, its speed against ours; with --packing also
    "compiled+packed". With inductor's dropout drawn as eager's (fallback_random) their losses are their eager
    twins' (fp32 on a CPU): the arms time the same computation, and take its FLOP count."""
    bench = load_benchmark("bench_pretrain")
    out = tmp_path / "bench.txt"
    argv = ["--device", "cpu", "--shape", "tiny", "--models", "BioDistilBERT", "--no-official", "--compile"]
    argv += ["--packing", "--warmup", "2", "--steps", "3", "--seconds", "0", "--out", str(out)]
    with torch._inductor.config.patch(fallback_random=True):
        assert bench.main(argv) == 0
    torch._dynamo.reset()
    rows = {row[1]: row for row in table(out.read_text(), "model | impl")[1:]}
    assert list(rows) == ["ours", "compiled", "packed", "compiled+packed"]
    for compiled, eager in (("compiled", "ours"), ("compiled+packed", "packed")):
        assert rows[compiled][2] == rows[eager][2] == "8 x 1" and rows[compiled][4] == rows[eager][4]
        assert float(rows[compiled][9]) > 0 and float(rows[compiled][3]) > 0
        assert float(rows[compiled][10]) == pytest.approx(float(rows[eager][10]), rel=1e-3)
    ratios = table(out.read_text(), "model | speed")[1:]
    assert [row[0] for row in ratios] == ["BioDistilBERT"] and ratios[0][1] == "-"
    for column, impl in ((5, "compiled"), (6, "packed"), (7, "compiled+packed")):
        assert float(ratios[0][column]) == pytest.approx(float(rows[impl][3]) / float(rows["ours"][3]), rel=0.05)


def test_packed_arm_beside_ours_for_the_models_that_pack(tmp_path):
    """--packing: a "packed" row beside ours for DistilBioBERT, none for CompactBioBERT (its layer terms average
    over padding) or BioMobileBERT (its trigram input would mix citations), and its speed against ours."""
    bench = load_benchmark("bench_pretrain")
    out = tmp_path / "bench.txt"
    argv = ["--device", "cpu", "--shape", "tiny", "--models", "DistilBioBERT", "CompactBioBERT", "BioMobileBERT"]
    argv += ["--no-official", "--packing", "--warmup", "2", "--steps", "2", "--seconds", "0", "--out", str(out)]
    assert bench.main(argv) == 0
    rows = [(row[0], row[1]) for row in table(out.read_text(), "model | impl")[1:]]
    assert rows == [
        ("DistilBioBERT", "ours"),
        ("DistilBioBERT", "packed"),
        ("CompactBioBERT", "ours"),
        ("BioMobileBERT", "ours"),
    ]
    ratios = table(out.read_text(), "model | speed")
    assert ratios[0][-3:] == ["speed compiled/ours", "speed packed/ours", "speed compiled+packed/ours"]
    assert [row[0] for row in ratios[1:]] == ["DistilBioBERT"]
    assert float(ratios[1][-2]) > 0 and ratios[1][-3] == ratios[1][-1] == "-"  # no compiled run


def test_bench_collates_as_the_pipeline_on_the_trainers_device(tmp_path, monkeypatch):
    """The bench's Trainer gets the pipeline's collator (train.masking_collator) for the Trainer's device: on CUDA
    that rounds packed row counts up to a multiple of 8, without which DistilBioBERT's compiled+packed step ran at
    0.83x of eager on an H100 (1.49x with it)."""
    bench = load_benchmark("bench_pretrain")
    calls = []

    def recording(tokenizer, train, objective, seed, device, masking_collator=bench.pretrain.masking_collator):
        collator = masking_collator(tokenizer, train, objective, seed, device)
        calls.append((collator.packing, device.type))
        return collator

    monkeypatch.setattr(bench.pretrain, "masking_collator", recording)
    argv = ["--device", "cpu", "--shape", "tiny", "--models", "DistilBioBERT", "--no-official", "--packing"]
    assert bench.main([*argv, "--warmup", "1", "--steps", "1", "--seconds", "0", "--out", str(tmp_path / "b")]) == 0
    assert calls == [(False, "cpu"), (True, "cpu")]


def test_profile_says_where_each_runs_step_time_went(tmp_path):
    """--profile N: N steps after the timed ones under torch.profiler, per run a section with the wall and the ops'
    own time per step and the ops that took most; the timed rows are those of a run without it."""
    bench = load_benchmark("bench_pretrain")
    out = tmp_path / "bench.txt"
    argv = ["--device", "cpu", "--shape", "tiny", "--models", "DistilBioBERT", "BioTinyBERT", "--no-official"]
    argv += ["--warmup", "1", "--steps", "2", "--seconds", "0", "--profile", "3", "--out", str(out)]
    assert bench.main(argv) == 0
    text = out.read_text()
    assert [row[:2] for row in table(text, "model | impl")[1:]] == [["DistilBioBERT", "ours"], ["BioTinyBERT", "ours"]]
    sections = text.split("\n## Profile: ")[1:]
    assert [s.splitlines()[0] for s in sections] == [
        f"{model} ours, 3 steps after the timed ones" for model in ("DistilBioBERT", "BioTinyBERT")
    ]
    for section in sections:
        wall, busy = (float(x) for x in re.search(r"Per step: (\S+) ms wall, (\S+) ms in", section).groups())
        assert 0 < busy < wall
        ops = table(section, "op |")[1:]
        assert 5 <= len(ops) <= 12 and all(op[0] for op in ops)
        shares = [float(op[3]) for op in ops]
        assert shares == sorted(shares, reverse=True) and sum(shares) <= 100.1
    linear = {op[0]: float(op[1]) for op in table(sections[0], "op |")[1:]}
    assert linear.get("aten::addmm", 0) + linear.get("aten::mm", 0) > 0  # the step's matrix products were seen


def test_profile_summary_counts_gpu_kernels_and_the_hosts_waits():
    """On CUDA: kernels' and copies' own time (not the CPU ops that launched them, nor user annotations' GPU ranges),
    per step; the host's synchronisations less the timer's own final one."""
    bench = load_benchmark("bench_pretrain")
    cuda, cpu = bench.DeviceType.CUDA, bench.DeviceType.CPU

    def event(key, device, own_us=0, count=1, annotation=False):
        return SimpleNamespace(
            key=key,
            device_type=device,
            self_device_time_total=own_us,
            self_cpu_time_total=0,
            count=count,
            is_user_annotation=annotation,
        )

    events = [
        event("aten::mm", cpu, own_us=0, count=4),
        event("sm90_gemm_bf16", cuda, own_us=6000, count=4),
        event("triton_poi_fused_gelu_0", cuda, own_us=2000, count=2),
        event("Memcpy DtoH (Device -> Pinned)", cuda, own_us=40, count=6),
        event("Optimizer.step#AdamW.step", cuda, own_us=9000, annotation=True),
        event("cudaStreamSynchronize", cpu, count=6),
        event("cudaDeviceSynchronize", cpu, count=1),
    ]
    summary = bench.profile_summary(events, steps=2, wall_s=0.01, device="cuda", top=2)
    assert summary["wall_ms"] == pytest.approx(5.0)
    assert summary["busy_ms"] == pytest.approx(8040 / 1000 / 2)
    assert summary["waits"] == 3.0
    assert summary["top"] == [
        ("sm90_gemm_bf16", 2.0, 3.0, pytest.approx(100 * 6000 / 8040)),
        ("triton_poi_fused_gelu_0", 1.0, 1.0, pytest.approx(100 * 2000 / 8040)),
    ]


def test_step_timer_waits_for_the_gpu_only_where_timing_starts_and_ends(monkeypatch):
    """The pipeline's training never waits for the GPU between steps: a timer that did at each step left the GPU
    idle while the host prepared the next one, and timed that idle too. It waits where the timing starts (the
    warm-up's queued work done) and at the last timed step (the timed steps' work done), and counts the steps."""
    bench = load_benchmark("bench_pretrain")
    waits = []
    monkeypatch.setattr(bench.torch.cuda, "synchronize", lambda: waits.append(1))
    timer = bench.StepTimer(warmup=3, steps=5, seconds=60.0, device="cuda")
    control = SimpleNamespace(should_training_stop=False)
    timer.on_train_begin(None, None, control)
    for step in range(1, 3 + 5 + 1):
        timer.on_step_end(None, SimpleNamespace(global_step=step), control)
        assert control.should_training_stop == (step == 3 + 5)
    assert len(waits) == 3  # the run's start, the timing's start, its end
    assert timer.timed == 5 and timer.elapsed > 0
