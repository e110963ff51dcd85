"""benchmarks/fidelity_ner.py on a tiny model: the workflow's NER job scores exactly as an independent run of the
official protocol (Trainer + seqeval, every piece labelled) with the same seed, in both scorings."""

import random

import pytest
from conftest import load_benchmark
from test_ner import toy_sentence, write_dataset


def test_job_equals_the_official_protocol_seed_for_seed(tiny_bert_dir, tmp_path, capsys):
    rng = random.Random(1)
    sentences = [toy_sentence(rng) for _ in range(100)]
    data = write_dataset(tmp_path / "toy", sentences[:64], sentences[64:82], sentences[82:])
    out = tmp_path / "fidelity.txt"
    fidelity = load_benchmark("fidelity_ner")
    argv = ["--model-dir", str(tiny_bert_dir), "--data-dir", str(data), "--seeds", "3", "--epochs", "4"]
    assert fidelity.main([*argv, "--learning-rate", "5e-3", "--batch-size", "8", "--out", str(out)]) == 0

    fields = [line.split() for line in out.read_text().splitlines()]
    rows = {row[0]: row for row in fields if row[1:2] == ["3"]}  # arm, seed, paper F1, word F1, diffs, seconds
    assert set(rows) == {"reference", "job"}
    assert float(rows["reference"][3]) > 0.5  # word F1: the toy task was learnt, so equality says something
    assert rows["job"][2:4] == rows["reference"][2:4]  # test F1, paper and word scoring
    assert rows["job"][4:6] == ["+0.0000", "+0.0000"]
    assert "job - reference, word scoring: mean +0.0000" in capsys.readouterr().out


def test_a_failed_worker_stops_the_benchmark_with_its_log(tmp_path):
    fidelity = load_benchmark("fidelity_ner")
    data = write_dataset(tmp_path / "toy", *([toy_sentence(random.Random(0))] * 3 for _ in range(3)))
    argv = ["--model-dir", str(tmp_path / "no-model"), "--data-dir", str(data), "--seeds", "1", "--epochs", "1"]
    with pytest.raises(SystemExit, match=r"worker (reference|job)-1 failed \(1\); its log ends:\n(.|\n)*no-model"):
        fidelity.main(argv)
