"""Cluster time limits of the pre-training jobs, from the measured speed of each model."""

import copy

import yaml
from conftest import REPO

from compact_biomed.pretrain import cost


def paper_config():
    return yaml.safe_load((REPO / "config/paper.yaml").read_text())


def test_each_paper_model_asks_for_its_measured_time_with_margin():
    config = paper_config()
    assert set(cost.STEPS_PER_SECOND) == set(config["models"])
    for model, rate in cost.STEPS_PER_SECOND.items():
        steps = config["models"][model].get("train", {}).get("max_steps", config["train_defaults"]["max_steps"])
        measured_minutes = steps / rate / 60
        minutes = cost.pretrain_runtime_minutes(config, model)
        assert cost.MARGIN * measured_minutes < minutes <= cost.MARGIN * measured_minutes + cost.STARTUP_MINUTES + 1
        assert minutes < 24 * 60  # under a day: a retry resumes from its checkpoint with the same limit
    mobile, tiny = (cost.pretrain_runtime_minutes(config, m) for m in ("BioMobileBERT", "BioTinyBERT"))
    assert mobile > 3 * tiny  # same 200k steps, 24 thin layers against 4


def test_an_unmeasured_model_gets_the_slowest_rate():
    config = copy.deepcopy(paper_config())
    config["models"]["MyBERT"] = copy.deepcopy(config["models"]["DistilBioBERT"])
    slowest = min(cost.STEPS_PER_SECOND, key=cost.STEPS_PER_SECOND.get)
    assert cost.pretrain_runtime_minutes(config, "MyBERT") == cost.pretrain_runtime_minutes(config, slowest)
