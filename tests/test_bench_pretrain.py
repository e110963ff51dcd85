"""benchmarks/bench_pretrain.py at a tiny shape on the CPU: every model, both implementations, the full table."""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_pretrain", REPO / "benchmarks" / "bench_pretrain.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


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
    bench = load_bench()
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
    bench = load_bench()
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
def test_compiled_arm_beside_ours_with_the_same_losses(tmp_path):
    """--compile: a "compiled" row per model, its compile time apart, its speed against ours; with inductor's dropout
    drawn as eager's (fallback_random) its losses are ours (fp32 on a CPU): the arm times the same computation."""
    bench = load_bench()
    out = tmp_path / "bench.txt"
    argv = ["--device", "cpu", "--shape", "tiny", "--models", "BioDistilBERT", "--no-official", "--compile"]
    with torch._inductor.config.patch(fallback_random=True):
        assert bench.main([*argv, "--warmup", "2", "--steps", "3", "--seconds", "0", "--out", str(out)]) == 0
    torch._dynamo.reset()
    rows = {row[1]: row for row in table(out.read_text(), "model | impl")[1:]}
    assert set(rows) == {"ours", "compiled"}
    assert rows["compiled"][2] == rows["ours"][2] == "8 x 1" and rows["compiled"][4] == rows["ours"][4]
    assert float(rows["compiled"][9]) > 0 and float(rows["compiled"][3]) > 0
    assert float(rows["compiled"][10]) == pytest.approx(float(rows["ours"][10]), rel=1e-3)
    ratios = table(out.read_text(), "model | speed")[1:]
    assert [row[0] for row in ratios] == ["BioDistilBERT"] and ratios[0][1] == "-"
    assert float(ratios[0][5]) == pytest.approx(float(rows["compiled"][3]) / float(rows["ours"][3]), rel=0.05)
