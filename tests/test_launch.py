"""Multi-GPU launch: the torchrun command, and in-process training when the job sees one GPU or none."""

import json
import sys

from compact_biomed.pretrain import launch


def test_torchrun_command_runs_one_worker_per_gpu(tmp_path):
    command = launch.torchrun_command(tmp_path / "args.json", 4)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in command and "--standalone" in command
    assert command[-3:] == ["-m", "compact_biomed.pretrain.launch", str(tmp_path / "args.json")]


def test_without_visible_gpus_training_runs_in_process(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(launch, "visible_gpus", lambda: 0)
    monkeypatch.setattr("compact_biomed.pretrain.train.run", lambda **kwargs: calls.append(kwargs))
    launch.run_pretraining({"checkpoint_dir": str(tmp_path), "recipe": "distilbiobert"}, gpus_requested=4)
    assert calls == [{"checkpoint_dir": str(tmp_path), "recipe": "distilbiobert"}]
    assert not (tmp_path / "launch_args.json").exists()


def test_several_visible_gpus_launch_torchrun_with_the_arguments(monkeypatch, tmp_path):
    commands = []
    monkeypatch.setattr(launch, "visible_gpus", lambda: 8)
    monkeypatch.setattr(launch.subprocess, "run", lambda command, check: commands.append(command))
    kwargs = {"checkpoint_dir": str(tmp_path / "ckpt"), "recipe": "tinybiobert", "train": {"max_steps": 3}}
    launch.run_pretraining(kwargs, gpus_requested=4)
    assert commands == [launch.torchrun_command(tmp_path / "ckpt" / "launch_args.json", 4)]
    assert json.loads((tmp_path / "ckpt" / "launch_args.json").read_text()) == kwargs
