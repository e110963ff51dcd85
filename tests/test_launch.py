"""Multi-GPU launch: the torchrun command, and in-process training when the job sees one GPU or none."""

import dataclasses
import json
import subprocess
import sys

import pytest
from conftest import tiny_train

from compact_biomed import pretrain
from compact_biomed.config import ConfigError
from compact_biomed.pretrain import launch
from compact_biomed.pretrain.micro_batch import check_batch_sizes

SETTINGS = pretrain.Settings(
    model_name="TinyBioBERT",
    recipe="tinybiobert",
    shard_dirs=("shards/0", "shards/1"),
    out_dir="out",
    checkpoint_dir="ckpt",
    teacher_dir="teacher",
    start_dir=None,
    student={"num_hidden_layers": 2},
    seed=3,
    train=dataclasses.replace(tiny_train(), per_device_batch_size="auto", save_steps=2),
)


@pytest.fixture
def trained(monkeypatch):
    """What in-process training was called with (instead of training)."""
    calls = []
    monkeypatch.setattr("compact_biomed.pretrain.train.train_and_export", calls.append)
    return calls


def test_torchrun_command_runs_one_worker_per_gpu(tmp_path):
    command = launch.torchrun_command(tmp_path / "args.json", 4)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in command and "--standalone" in command
    assert command[-3:] == ["-m", "compact_biomed.pretrain.launch", str(tmp_path / "args.json")]


def test_without_visible_gpus_training_runs_in_process(monkeypatch, tmp_path, trained):
    monkeypatch.setattr(launch, "visible_gpus", lambda: 0)
    settings = dataclasses.replace(SETTINGS, checkpoint_dir=str(tmp_path))
    pretrain.run(settings, gpus=4)
    assert trained == [settings]
    assert not (tmp_path / launch.SETTINGS_FILE).exists()


def test_several_visible_gpus_launch_torchrun_whose_workers_train_in_process(monkeypatch, tmp_path, trained):
    commands = []
    monkeypatch.setattr(launch, "visible_gpus", lambda: 8)
    monkeypatch.setattr(launch.subprocess, "run", lambda command, check: commands.append(command))
    settings = dataclasses.replace(SETTINGS, checkpoint_dir=str(tmp_path / "ckpt"))
    assert pretrain.run(settings, gpus=4) is None and trained == []
    settings_file = tmp_path / "ckpt" / launch.SETTINGS_FILE
    assert commands == [launch.torchrun_command(settings_file, 4)]
    assert json.loads(settings_file.read_text())["train"] == dataclasses.asdict(settings.train)
    pretrain.run(launch.read_settings(settings_file))  # what each worker does (`python -m ...launch FILE`)
    assert trained == [settings]  # the same settings, shard_dirs a tuple again


def test_a_workers_one_line_error_ends_the_launching_job_in_that_line(tmp_path):
    """A real torchrun (one CPU worker): the worker's clean error (batch sizes that do not divide, checked before
    anything loads) is the launching process's error, in the same one line, so the job's console shows it. Before,
    the job ended in a CalledProcessError and the line was left among the workers' tracebacks in the log."""
    train = dataclasses.replace(SETTINGS.train, per_device_batch_size=3)
    settings = dataclasses.replace(SETTINGS, checkpoint_dir=str(tmp_path / "ckpt"), train=train)
    with pytest.raises(ConfigError) as expected:
        check_batch_sizes(train)
    with pytest.raises(pretrain.WorkerError) as error:
        launch.torchrun(settings, 1)
    assert str(error.value) == f"invalid config value at 'models.TinyBioBERT.train': {expected.value}"
    assert not (tmp_path / "ckpt" / launch.ERROR_FILE).exists()  # read once: a later failure is not taken for it


def test_workers_that_fail_without_a_line_fail_the_job_as_they_did_not_with_an_earlier_line(monkeypatch, tmp_path):
    """A worker killed or failing with a bug leaves no line: the job fails with torchrun's exit status, never with
    the line an earlier launch left behind."""
    settings = dataclasses.replace(SETTINGS, checkpoint_dir=str(tmp_path))
    (tmp_path / launch.ERROR_FILE).write_text("an earlier launch's error\n")
    monkeypatch.setattr(launch, "torchrun_command", lambda *args: [sys.executable, "-c", "raise SystemExit(1)"])
    with pytest.raises(subprocess.CalledProcessError):
        launch.torchrun(settings, 2)
