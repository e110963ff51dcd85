"""End-to-end pre-training runs with tiny models: export, model card, per-term log, resume equality, errors."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import datasets
import pytest
import torch
import yaml
from conftest import REPO, TINY_TEXTS, make_tiny_bert, tiny_train
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from snakemake.utils import validate
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling, TrainerCallback

from compact_biomed.base_models import SOURCE_FILE, random_init
from compact_biomed.config import ConfigError
from compact_biomed.io import InputError
from compact_biomed.pretrain import (
    Diverged,
    Settings,
    TrainSettings,
    checkpoints,
    data,
    launch,
    losses,
    micro_batch,
    recipes,
    run,
)
from compact_biomed.pretrain import train as pretrain
from compact_biomed.pretrain.checkpoints import (
    DIVERGED_FILE,
    LOCK_FILE,
    latest_complete_checkpoint,
    remove_incomplete_checkpoints,
)

torch.set_num_threads(1)

TRAIN = tiny_train()
TINY_STUDENT = {"num_hidden_layers": 2, "hidden_size": 24, "num_attention_heads": 4, "intermediate_size": 48}


def train_with(**changes) -> TrainSettings:
    return dataclasses.replace(TRAIN, **changes)


def settings(
    recipe, shards, out, checkpoint_dir, train=TRAIN, teacher_dir=None, start_dir=None, student=None, model_name="tiny"
) -> Settings:
    """The settings of one run, as `Settings.from_config` builds them from a config row."""
    return Settings(
        model_name=model_name,
        recipe=recipe,
        shard_dirs=tuple(str(s) for s in shards),
        out_dir=str(out),
        checkpoint_dir=str(checkpoint_dir),
        teacher_dir=str(teacher_dir) if teacher_dir else None,
        start_dir=str(start_dir) if start_dir else None,
        student=student,
        seed=42,
        train=train,
    )


def save_shard(tokenizer_dir, out_dir, texts=TINY_TEXTS):
    """A tokenised shard as the pipeline writes it: input_ids + special_tokens_mask, saved with save_to_disk."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    enc = tokenizer(texts, truncation=True, max_length=32, return_special_tokens_mask=True)
    datasets.Dataset.from_dict(
        {"input_ids": enc["input_ids"], "special_tokens_mask": enc["special_tokens_mask"]}
    ).save_to_disk(str(out_dir))
    return str(out_dir)


@pytest.fixture(scope="module")
def start_models(tmp_path_factory, tiny_bert_dir):
    """Continual-MLM start points (bert, distilbert, mobilebert), each with its own tokenizer and shard."""
    root = tmp_path_factory.mktemp("starts")
    configs = {
        "distilbert": {"n_layers": 2, "dim": 32, "n_heads": 4, "hidden_dim": 64, "max_position_embeddings": 128},
        "mobilebert": {
            "num_hidden_layers": 2,
            "hidden_size": 32,
            "embedding_size": 16,
            "true_hidden_size": 16,
            "intra_bottleneck_size": 16,
            "intermediate_size": 32,
            "num_attention_heads": 2,
            "num_feedforward_networks": 2,
            "max_position_embeddings": 128,
        },
    }
    starts = {"bert": (str(tiny_bert_dir), save_shard(tiny_bert_dir, root / "bert-shard"))}
    for model_type, config in configs.items():
        model_dir = root / model_type
        random_init(TINY_TEXTS, model_dir, model_type, lowercase=True, vocab_size=300, seed=0, config=config)
        starts[model_type] = (str(model_dir), save_shard(model_dir, root / f"{model_type}-shard"))
    return starts


@pytest.fixture(scope="module")
def teacher_shard(start_models):
    return start_models["bert"][1]


def front_matter(readme: str) -> dict:
    assert readme.startswith("---\n")
    return yaml.safe_load(readme.split("---\n")[1])


def hub_teacher(tmp_path, model_dir, hub_id):
    """A copy of `model_dir` recorded as downloaded from `hub_id` (base_models.from_hub's source.json)."""
    copy = tmp_path / "hub-teacher"
    shutil.copytree(model_dir, copy)
    (copy / SOURCE_FILE).write_text(json.dumps({"hub_id": hub_id, "revision": "main", "tokenizer_hub_id": None}))
    return copy


def check_export(out_dir, summary, recipe_name, steps, base_model=None):
    """The exported model, its log and its card; the card's metadata names `base_model` only for a hub id."""
    recipe = recipes.get_recipe(recipe_name)
    model = AutoModelForMaskedLM.from_pretrained(out_dir)
    AutoTokenizer.from_pretrained(out_dir)
    saved = load_file(out_dir / "model.safetensors")
    assert not [k for k in saved if k.startswith(("teacher", "fit_dense", "student."))]
    assert summary["parameters"] == sum(p.numel() for p in model.parameters())
    card = ModelCard.load(out_dir / "README.md").data.to_dict()
    assert card["recipe"] == recipe_name and card["steps"] == steps and card["losses"] == recipe.loss_weights
    assert "fill-mask" in card["tags"] and card["library_name"] == "transformers"
    assert card.get("base_model") == base_model
    if base_model:
        assert card["teacher"] == base_model
    rows = [json.loads(line) for line in (out_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for row in rows:
        terms = {name: row[f"loss_{name}"] for name in recipe.loss_weights}
        assert row["lr"] is not None
        assert row["loss"] == pytest.approx(sum(recipe.loss_weights[k] * v for k, v in terms.items()), rel=1e-5)
    assert summary["final_losses"]["loss"] == rows[-1]["loss"]
    return model


@pytest.mark.parametrize(
    "recipe_name,student,train_extra",
    [
        ("distilbiobert", None, {}),
        ("compactbiobert", None, {"teacher_dropout": False}),
        ("tinybiobert", TINY_STUDENT, {}),
    ],
)
def test_distillation_run_exports_student_only(
    tmp_path, tiny_bert_dir, teacher_shard, recipe_name, student, train_extra
):
    """The card names the teacher as `base_model` when it came from the hub, and never a local folder (the hub
    rejects a path there): the random tiny teacher has none, its copy recorded as a download has one."""
    out = tmp_path / "out"
    hub_id = "dmis-lab/biobert-base-cased-v1.2" if recipe_name == "compactbiobert" else None
    teacher = hub_teacher(tmp_path, tiny_bert_dir, hub_id) if hub_id else tiny_bert_dir
    summary = run(
        settings(
            recipe_name,
            [teacher_shard],
            out,
            tmp_path / "ckpt",
            train_with(**train_extra),
            teacher_dir=teacher,
            student=student,
            model_name=f"tiny-{recipe_name}",
        )
    )
    assert summary["steps"] == 3 and summary["gradient_accumulation_steps"] == 2
    model = check_export(out, summary, recipe_name, 3, base_model=hub_id)
    teacher = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir)
    assert model.config.num_hidden_layers == 2 < teacher.config.num_hidden_layers
    assert model.config.vocab_size == teacher.config.vocab_size
    (run_dir,) = (tmp_path / "ckpt").iterdir()
    assert run_dir.name.startswith("run-")
    assert sorted(os.listdir(run_dir)) == ["run.json", LOCK_FILE]  # save_steps 0: no checkpoint


@pytest.mark.parametrize("start", ["bert", "distilbert", "mobilebert"])
def test_continual_mlm_run_from_each_architecture(tmp_path, start_models, start):
    start_dir, shard = start_models[start]
    out = tmp_path / "out"
    summary = run(
        settings(
            "continual_mlm", [shard, shard], out, tmp_path / "ckpt", start_dir=start_dir, model_name=f"bio-{start}"
        )
    )
    model = check_export(out, summary, "continual_mlm", 3)
    assert model.config.model_type == start
    before = AutoModelForMaskedLM.from_pretrained(start_dir).state_dict()
    after = model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained


class SimulatedKill(Exception):
    pass


class KillAfterCheckpoint(TrainerCallback):
    """Dies right after the checkpoint of `step` is complete, like a job whose time limit hit there."""

    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise SimulatedKill


def killed_after_checkpoint(monkeypatch, step):
    """The next run's Trainer dies after the checkpoint of `step`."""

    class KilledTrainer(pretrain.PretrainTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(KillAfterCheckpoint(step))

    monkeypatch.setattr(pretrain, "PretrainTrainer", KilledTrainer)


@pytest.mark.parametrize("recipe_name,student", [("distilbiobert", None), ("tinybiobert", TINY_STUDENT)])
def test_interrupted_and_resumed_run_equals_uninterrupted(
    tmp_path, tiny_bert_dir, teacher_shard, recipe_name, student, monkeypatch
):
    train = train_with(max_steps=6, save_steps=3, warmup_steps=2)
    common = {"train": train, "teacher_dir": tiny_bert_dir, "student": student}
    run(settings(recipe_name, [teacher_shard], tmp_path / "a", tmp_path / "ck-a", **common))

    with monkeypatch.context() as patch, pytest.raises(SimulatedKill):
        killed_after_checkpoint(patch, 3)
        run(settings(recipe_name, [teacher_shard], tmp_path / "b", tmp_path / "ck-b", **common))
    assert not (tmp_path / "b").exists()  # nothing exported by the killed job
    (run_dir,) = (tmp_path / "ck-b").iterdir()
    partial = run_dir / "checkpoint-5"  # a later save killed half-way: no trainer_state.json
    partial.mkdir()
    (partial / "config.json").write_text("{}")
    summary = run(settings(recipe_name, [teacher_shard], tmp_path / "b", tmp_path / "ck-b", **common))

    assert summary["resumed_from"] == str(run_dir / "checkpoint-3")
    assert summary["steps"] == 6
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert (tmp_path / "a" / "train_log.jsonl").read_text() == (tmp_path / "b" / "train_log.jsonl").read_text()
    assert not partial.exists()
    if recipe_name == "tinybiobert":  # the projection is checkpointed (to resume) but never exported
        assert (run_dir / "checkpoint-3" / pretrain.FIT_DENSE_FILE).is_file()


def test_changed_settings_start_afresh_and_the_old_run_is_kept(tmp_path, tiny_bert_dir, teacher_shard, capsys):
    train = train_with(max_steps=2, save_steps=2)
    args = ("continual_mlm", [teacher_shard], tmp_path / "out", tmp_path / "ckpt")
    run(settings(*args, train, start_dir=tiny_bert_dir))
    (first_run,) = (tmp_path / "ckpt").iterdir()
    changed = run(settings(*args, dataclasses.replace(train, learning_rate=5e-4), start_dir=tiny_bert_dir))
    assert changed["resumed_from"] is None and changed["steps"] == 2
    assert re.search(r"inputs or settings changed since .* \(learning_rate\): starting afresh", capsys.readouterr().out)
    assert len(list((tmp_path / "ckpt").iterdir())) == 2  # the first run's checkpoints are kept
    harmless = dataclasses.replace(train, logging_steps=2, compile=True)  # compile: the same computation
    again = run(settings(*args, harmless, start_dir=tiny_bert_dir))
    assert again["resumed_from"] == str(first_run / "checkpoint-2") and again["steps"] == 2
    # a precision set by hand is part of the run (on a GPU, auto's bf16 and fp32 learn differently)
    fp32 = run(settings(*args, dataclasses.replace(train, precision="fp32"), start_dir=tiny_bert_dir))
    assert fp32["resumed_from"] is None and re.search(r"changed since .* \(.*precision\)", capsys.readouterr().out)


def test_a_run_another_process_is_training_is_left_to_it(tmp_path, tiny_bert_dir, teacher_shard):
    """A trainer left running by a killed Snakemake, and its rerun: the second stops in one line naming the first,
    before it removes the first's half-saved checkpoint; once the first has ended, the run resumes as usual."""
    train = train_with(max_steps=2, save_steps=2)
    job = settings("distilbiobert", [teacher_shard], tmp_path / "out", tmp_path / "ck", train, tiny_bert_dir)
    run(job)
    (run_folder,) = (tmp_path / "ck").iterdir()
    saving = run_folder / "checkpoint-4"  # the other trainer's save, half-way
    saving.mkdir()
    for handle in checkpoints._held_locks.values():  # this test process's lock (its first run) let go, as at its end
        handle.close()
    checkpoints._held_locks.clear()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_folder / LOCK_FILE)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=rf"^{run_folder}: is being trained by pid {holder.pid} on "):
            run(job)
        assert saving.is_dir()
    finally:
        holder.kill()
        holder.wait()
    assert run(job)["resumed_from"] == str(run_folder / "checkpoint-2") and not saving.exists()


def test_a_file_system_without_locks_trains_unlocked(tmp_path, tiny_bert_dir, teacher_shard, monkeypatch, capsys):
    """Lustre mounted without flock answers ENOSYS: the run goes on, and says it is not locked."""
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    train = train_with(max_steps=2)
    job = settings("distilbiobert", [teacher_shard], tmp_path / "out", tmp_path / "ck", train, tiny_bert_dir)
    assert run(job)["steps"] == 2
    assert "not locked (Function not implemented)" in capsys.readouterr().out


HOLD_LOCK = """
import fcntl, os, socket, sys, time
handle = open(sys.argv[1], "a+")
fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError, not a wait, if the test still held it
handle.seek(0); handle.truncate(); handle.write(f"pid {os.getpid()} on {socket.gethostname()}"); handle.flush()
print("held", flush=True)
time.sleep(600)
"""


def test_checkpoints_of_the_old_layout_are_neither_resumed_nor_touched(tmp_path, tiny_bert_dir, teacher_shard, capsys):
    old = tmp_path / "ckpt" / "checkpoint-2"
    old.mkdir(parents=True)
    (old / "trainer_state.json").write_text('{"global_step": 2}')
    summary = run(
        settings(
            "distilbiobert",
            [teacher_shard],
            tmp_path / "out",
            tmp_path / "ckpt",
            train_with(max_steps=1),
            teacher_dir=tiny_bert_dir,
        )
    )
    assert summary["resumed_from"] is None and "not resumed and are left as they are" in capsys.readouterr().out
    assert os.listdir(old) == ["trainer_state.json"]


def tiny_teacher(folder, seed):
    return str(make_tiny_bert(folder, seed))


def weights(out_dir) -> dict:
    return load_file(out_dir / "model.safetensors")


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("change", ["teacher weights", "teacher tokenizer", "shards"])
def test_changed_inputs_at_the_same_paths_start_afresh(tmp_path, teacher_shard, capsys, change):
    """The same paths with new content (as `--forcerun pretrain` after a new corpus or teacher) never resume."""
    teacher = tiny_teacher(tmp_path / "teacher", seed=0)
    shard = save_shard(teacher, tmp_path / "shard")
    train = train_with(max_steps=2, save_steps=2)

    def run_into(out, checkpoint_dir="ckpt"):
        return run(
            settings("distilbiobert", [shard], tmp_path / out, tmp_path / checkpoint_dir, train, teacher_dir=teacher)
        )

    run_into("old")

    if change == "teacher weights":
        shutil.rmtree(teacher)
        tiny_teacher(tmp_path / "teacher", seed=1)
    elif change == "teacher tokenizer":  # a tokenizer setting: the weights and token ids stay
        config = tmp_path / "teacher" / "tokenizer_config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "model_max_length": 64}))
    else:
        datasets.Dataset.from_dict(datasets.load_from_disk(shard)[::-1]).save_to_disk(str(tmp_path / "reversed"))
        shutil.rmtree(shard)
        shutil.move(tmp_path / "reversed", shard)
    capsys.readouterr()
    rerun = run_into("new")
    assert rerun["resumed_from"] is None and rerun["steps"] == 2
    assert "starting afresh" in capsys.readouterr().out
    fresh = run_into("fresh", "ckpt-fresh")
    assert fresh["resumed_from"] is None
    assert same_weights(weights(tmp_path / "new"), weights(tmp_path / "fresh"))
    if change != "teacher tokenizer":
        assert not same_weights(weights(tmp_path / "new"), weights(tmp_path / "old"))


def test_a_finished_run_rerun_is_exported_again_without_training(tmp_path, tiny_bert_dir, teacher_shard, capsys):
    train = train_with(max_steps=4, save_steps=2, lr_scheduler="constant", warmup_steps=0)
    first = run(
        settings("distilbiobert", [teacher_shard], tmp_path / "a", tmp_path / "ckpt", train, teacher_dir=tiny_bert_dir)
    )
    capsys.readouterr()
    again = run(
        settings("distilbiobert", [teacher_shard], tmp_path / "b", tmp_path / "ckpt", train, teacher_dir=tiny_bert_dir)
    )
    assert first["steps"] == again["steps"] == 4 and again["resumed_from"].endswith("checkpoint-4")
    assert "exporting it, no further training" in capsys.readouterr().out
    for name in ("model.safetensors", "config.json", "README.md", "train_log.jsonl", "tokenizer.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert again["final_losses"] == first["final_losses"]


def test_a_compiled_step_needs_memory_to_spare_beyond_the_eager_probe():
    """CompactBioBERT's eager step (39.9 GiB on an H100) fits a 48 GiB GPU's budget, its compiled step (48.7 GiB)
    does not: with `compile` the probe's peak must fit with COMPILED_MEMORY_FACTOR's margin."""
    gib = 2**30
    budget = micro_batch.MEMORY_HEADROOM * 48 * gib
    assert micro_batch.step_fits(int(39.0 * gib), gib, budget, compiled=False)
    assert not micro_batch.step_fits(int(39.0 * gib), gib, budget, compiled=True)
    assert micro_batch.step_fits(int(30.0 * gib), gib, budget, compiled=True)


def test_auto_micro_batch_probes_for_the_compiled_step(monkeypatch):
    """choose_micro_batch tells the probe whether the step will be compiled."""
    seen = []

    def fits(objective, batch_size, probe, compiled):
        seen.append(compiled)
        return True

    monkeypatch.setattr(micro_batch, "fits_device_memory", fits)
    for compiled in (False, True):
        train = train_with(per_device_batch_size="auto", global_batch_size=4, compile=compiled)
        assert micro_batch.choose_micro_batch(train, torch.nn.Linear(2, 2), 16, 100) == 4
    assert seen == [False, True]


def test_auto_micro_batch_is_the_largest_that_fits_and_keeps_the_loss_sequence(
    tmp_path, tiny_bert_dir, teacher_shard, monkeypatch
):
    """A device where only 2 sequences fit: auto picks 2 of the global 8 (4 accumulation steps), after a real probe
    step on the model, and trains exactly as a run with per_device_batch_size 2 set by hand."""
    probed = []

    def two_fit(objective, batch_size, probe, compiled):
        micro_batch.probe_step(objective, batch_size, probe)  # the real probe: it must leave no trace
        probed.append((batch_size, probe.max_length))
        assert not compiled
        return batch_size <= 2

    with monkeypatch.context() as patch:
        patch.setattr(micro_batch, "fits_device_memory", two_fit)
        auto = run(
            settings(
                "distilbiobert",
                [teacher_shard],
                tmp_path / "auto",
                tmp_path / "ck-a",
                train_with(max_steps=4, warmup_steps=2, per_device_batch_size="auto"),
                teacher_dir=tiny_bert_dir,
            )
        )
    hand = run(
        settings(
            "distilbiobert",
            [teacher_shard],
            tmp_path / "hand",
            tmp_path / "ck-h",
            train_with(max_steps=4, warmup_steps=2, per_device_batch_size=2),
            teacher_dir=tiny_bert_dir,
        )
    )

    longest = max(len(ids) for ids in data.load_shards([teacher_shard])["input_ids"])
    assert probed[0] == (8, longest) and {n for n, _ in probed} <= {1, 2, 4, 8}  # largest first, divisors only
    assert (auto["per_device_batch_size"], auto["gradient_accumulation_steps"]) == (2, 4)
    assert (hand["per_device_batch_size"], hand["gradient_accumulation_steps"]) == (2, 4)
    assert (tmp_path / "auto" / "train_log.jsonl").read_text() == (tmp_path / "hand" / "train_log.jsonl").read_text()
    card = (tmp_path / "auto" / "README.md").read_text()
    assert front_matter(card)["per_device_batch_size"] == 2 and "the largest that fits the device" in card
    assert "set by hand" in (tmp_path / "hand" / "README.md").read_text()


def test_probe_step_leaves_no_trace(tiny_bert_dir):
    recipe = recipes.get_recipe("distilbiobert")
    teacher = recipes.load_teacher(str(tiny_bert_dir), recipe)
    objective = recipes.PretrainingObjective(recipe, recipes.build_student(recipe, teacher), teacher).eval()
    before = {k: v.clone() for k, v in objective.state_dict().items()}
    rng = torch.random.get_rng_state()
    micro_batch.probe_step(objective, 3, micro_batch.ProbeBatch(16, teacher.config.vocab_size, 0.15, None))
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(p.grad is None for p in objective.parameters()) and not objective.training
    assert all(torch.equal(before[k], v) for k, v in objective.state_dict().items())


def test_largest_fitting_micro_batch():
    assert micro_batch.micro_batch_candidates(192, 4) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 48]
    for limit in (1, 5, 7, 23, 47, 48, 1000):
        tried = []
        chosen = micro_batch.largest_fitting(
            micro_batch.micro_batch_candidates(192, 4),
            lambda n, tried=tried, limit=limit: tried.append(n) or n <= limit,
        )
        assert chosen == max(n for n in (1, 2, 3, 4, 6, 8, 12, 16, 24, 48) if n <= limit)
        assert tried[0] == 48 and len(tried) <= 5  # the largest first, then a binary search
    with pytest.raises(RuntimeError, match="not even a micro-batch of 1"):
        micro_batch.largest_fitting([1, 2], lambda n: False)
    with pytest.raises(ConfigError, match="global_batch_size 10 is not a multiple of 4 process"):
        micro_batch.micro_batch_candidates(10, 4)


# --- pieces -------------------------------------------------------------------------------------------------------


def test_latest_complete_checkpoint_skips_incomplete_ones(tmp_path):
    def make(
        step,
        state='{"global_step": 1}',
        files=("config.json", "optimizer.pt", "scheduler.pt", "model.safetensors", "rng_state.pth"),
    ):
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        for name in files:
            (path / name).write_text("x")
        if state is not None:
            (path / "trainer_state.json").write_text(state)

    make(2)
    make(10, state=None)  # numerically newest, but killed before trainer_state.json
    make(9, state='{"global_st')  # truncated state
    make(7, files=("config.json", "model.safetensors"))  # no optimizer
    (tmp_path / "checkpoint-x").mkdir()
    assert latest_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    remove_incomplete_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-x"]
    assert latest_complete_checkpoint(tmp_path / "missing") is None


def test_masking_depends_only_on_seed_and_example_indices(tiny_bert_dir, teacher_shard):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    examples = data.IndexedExamples(data.load_shards([teacher_shard]))
    collator = data.ReproducibleMaskingCollator(tokenizer, 0.3, mask_seed=42)

    torch.manual_seed(0)
    first = collator(examples.__getitems__([3, 8, 1]))
    state = torch.random.get_rng_state()
    torch.manual_seed(123)  # a different global RNG state must not matter
    again = collator(examples.__getitems__([3, 8, 1]))
    other = collator(examples.__getitems__([3, 8, 2]))
    assert set(first) == {"input_ids", "attention_mask", "labels", "masked_index", "token_index"}
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["labels"][:2], other["labels"][:2])
    torch.manual_seed(0)
    collator(examples.__getitems__([3, 8, 1]))
    assert torch.equal(torch.random.get_rng_state(), state)  # collation leaves the global RNG alone
    special = torch.tensor(examples[3]["special_tokens_mask"]).bool()
    assert (first["labels"][0, : len(special)][special] == -100).all()  # [CLS]/[SEP] never masked


def test_collator_pads_and_masks_exactly_as_the_hf_collator(tiny_bert_dir, teacher_shard):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    examples = data.IndexedExamples(data.load_shards([teacher_shard]))
    ours = data.ReproducibleMaskingCollator(tokenizer, 0.3, mask_seed=7)
    reference = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3)
    lengths = set()
    for indices in ([0, 1, 2, 3], [5, 2], [7], list(range(len(examples)))):
        batch = ours(examples.__getitems__(indices))
        reference.generator = ours.masking_generator(indices)
        expected = reference(
            [{k: v for k, v in example.items() if k != "example_index"} for example in examples.__getitems__(indices)]
        )
        assert all(torch.equal(batch[key], expected[key]) for key in ("input_ids", "attention_mask", "labels"))
        assert batch["input_ids"].dtype == expected["input_ids"].dtype
        lengths |= set(batch["attention_mask"].sum(1).tolist())
    assert len(lengths) > 1  # batches with padding


@pytest.mark.parametrize("packing", [False, True])
def test_collator_gives_the_flat_indices_of_masked_and_real_positions(tiny_bert_dir, teacher_shard, packing):
    """The indices select what the masks select, in the same order (recipes' rows, losses.rows_at)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    examples = data.IndexedExamples(data.load_shards([teacher_shard]))
    collator = data.ReproducibleMaskingCollator(tokenizer, 0.3, mask_seed=7, packing=packing)
    batch = collator(examples.__getitems__(list(range(len(examples)))))
    masked, real = batch["labels"] != -100, batch["attention_mask"].bool()
    assert masked.sum() > 0 and (~real).sum() > 0  # masked positions, and padding
    hidden = torch.randn(*batch["input_ids"].shape, 5)
    for index, mask in ((batch["masked_index"], masked), (batch["token_index"], real)):
        assert index.dtype == torch.long and index.dim() == 1
        assert torch.equal(losses.rows_at(hidden, index), hidden[mask])
        assert torch.equal(losses.rows_at(batch["labels"], index), batch["labels"][mask])


@pytest.fixture(scope="module")
def mixed_lengths_shard(tmp_path_factory, tiny_bert_dir):
    """Titles and abstracts: citations of 3-6 and of 32 tokens, as PubMed's title-only citations among abstracts."""
    titles = ["Aspirin.", "Cisplatin toxicity.", "BRCA1 in cancer.", "Metformin."]
    abstracts = [" ".join(TINY_TEXTS[i : i + 4]) for i in range(5)]
    texts = [text for pair in zip(titles * 4, abstracts * 4) for text in pair]
    return save_shard(tiny_bert_dir, tmp_path_factory.mktemp("mixed") / "shard", texts)


def test_packing_collator_keeps_every_citation_and_its_masks(tiny_bert_dir, mixed_lengths_shard):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    examples = data.IndexedExamples(data.load_shards([mixed_lengths_shard]))
    indices = list(range(8))
    plain = data.ReproducibleMaskingCollator(tokenizer, 0.3, mask_seed=7)(examples.__getitems__(indices))
    rows = data.ReproducibleMaskingCollator(tokenizer, 0.3, mask_seed=7, packing=True)(examples.__getitems__(indices))
    assert set(rows) == {
        "input_ids",
        "attention_mask",
        "labels",
        "position_ids",
        "segments",
        "masked_index",
        "token_index",
    }
    assert rows["input_ids"].shape[1] == plain["input_ids"].shape[1] and len(rows["input_ids"]) < len(indices)
    citations = {key: [] for key in ("input_ids", "labels")}
    for row in range(len(rows["input_ids"])):
        for segment in range(1, int(rows["segments"][row].max()) + 1):
            span = rows["segments"][row] == segment
            assert rows["position_ids"][row][span].tolist() == list(range(int(span.sum())))
            for key, found in citations.items():
                found.append(tuple(rows[key][row][span].tolist()))
    lengths = plain["attention_mask"].sum(1).tolist()
    for key, found in citations.items():
        assert sorted(found) == sorted(tuple(r[:n]) for r, n in zip(plain[key].tolist(), lengths))  # same masks
    tokenizer.padding_side = "left"
    with pytest.raises(ValueError, match="packing reads each citation from the start of its row"):
        data.ReproducibleMaskingCollator(tokenizer, 0.3, mask_seed=7, packing=True)


def test_masking_collator_rounds_packed_rows_on_the_trainers_cuda_device_only(tiny_bert_dir):
    """train.masking_collator, which train_and_export and bench_pretrain both use: packed rows rounded up to
    PACKED_ROW_MULTIPLE on a CUDA device (a new shape per row count is slow there), exact elsewhere."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    objective = recipes.PretrainingObjective(
        recipes.get_recipe("continual_mlm"), AutoModelForMaskedLM.from_pretrained(tiny_bert_dir)
    )
    for device, multiple in (("cuda", data.PACKED_ROW_MULTIPLE), ("cpu", 1)):
        collator = pretrain.masking_collator(tokenizer, train_with(packing=True), objective, 0, torch.device(device))
        assert (collator.packing, collator.row_multiple) == (True, multiple)
    assert data.PACKED_ROW_MULTIPLE > 1


def test_packed_run_has_the_padded_runs_losses(tmp_path, tiny_bert_dir, mixed_lengths_shard, monkeypatch):
    """A DistilBioBERT run with `packing`: its micro-batches hold fewer rows, with the losses and weights of the
    padded run (dropout off on both sides: it is drawn per row)."""
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_bert_dir, teacher)
    config = json.loads((teacher / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (teacher / "config.json").write_text(json.dumps(config))
    sizes = []  # (citations, rows) per packed micro-batch

    def counting_pack_rows(batch, pad_token_id, row_multiple, pack_rows=data.pack_rows):
        unrounded = pack_rows(batch, pad_token_id)  # on CUDA the rows are rounded up to a multiple of 8
        sizes.append((len(batch["input_ids"]), len(unrounded["input_ids"])))
        return pack_rows(batch, pad_token_id, row_multiple)

    monkeypatch.setattr(data, "pack_rows", counting_pack_rows)
    runs = {}
    for packing in (False, True):
        out = tmp_path / f"out-{packing}"
        run(
            settings(
                "distilbiobert",
                [mixed_lengths_shard],
                out,
                tmp_path / f"ck-{packing}",
                train_with(packing=packing),
                teacher,
            )
        )
        runs[packing] = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        runs[packing].append(load_file(out / "model.safetensors"))
    assert len(sizes) >= 6 and any(rows < citations for citations, rows in sizes)  # all through pack_rows, some packed
    padded, packed = runs[False], runs[True]
    for row_padded, row_packed in zip(padded[:-1], packed[:-1]):
        for key in ("loss", "loss_mlm", "loss_ce", "loss_cos", "grad_norm"):
            assert row_packed[key] == pytest.approx(row_padded[key], rel=1e-4), key
    for key, value in padded[-1].items():
        torch.testing.assert_close(packed[-1][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_packing_is_off_with_a_line_where_citations_would_mix(tmp_path, start_models, capsys):
    start_dir, shard = start_models["mobilebert"]
    train = train_with(packing=True, max_steps=1)
    run(settings("continual_mlm", [shard], tmp_path / "out", tmp_path / "ck", train, start_dir=start_dir))
    assert "packing: off for recipe continual_mlm on mobilebert" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(
    not shutil.which(os.environ.get("CXX", "g++")), reason="torch.compile on a CPU needs a C++ compiler"
)
@pytest.mark.parametrize("recipe_name", ["continual_mlm", "compactbiobert", "tinybiobert"])
def test_compiled_training_step_has_the_eager_losses(tmp_path, start_models, tiny_bert_dir, teacher_shard, recipe_name):
    """`compile` on: the same per-step losses and weights as eager (fp32 on a CPU); dropout draws from aten's
    generator as in eager (fallback_random), so that the runs can be compared. A continual run, CompactBioBERT, whose
    terms read both models' attention maps and hidden states, and TinyBioBERT, whose also go through the trained
    projection (fit_dense); each compiles without a graph break (before, CompactBioBERT's step broke 14 times into 7
    graphs). On an H200 the compiled steps' mean losses differ from eager by 1.6-1.7% for the two that read attention
    maps after dropout (benchmarks/results/h200-pretrain-compiled.txt). Slow: compiling takes ~30 s here."""
    if recipe_name == "continual_mlm":
        start_dir, shard = start_models["distilbert"]  # 2 layers: the quickest to compile
        models = {"start_dir": start_dir}
    else:
        shard, models = teacher_shard, {"teacher_dir": tiny_bert_dir}
        if recipe_name == "tinybiobert":
            models["student"] = TINY_STUDENT
    runs, graphs, breaks = {}, {}, {}
    for compiled in (False, True):
        out = tmp_path / f"out-{compiled}"
        before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        broken = sum(torch._dynamo.utils.counters["graph_break"].values())
        with torch._inductor.config.patch(fallback_random=True):
            run(
                settings(
                    recipe_name,
                    [shard],
                    out,
                    tmp_path / f"ck-{compiled}",
                    train_with(max_steps=2, compile=compiled),
                    **models,
                )
            )
        graphs[compiled] = torch._dynamo.utils.counters["stats"]["unique_graphs"] - before
        breaks[compiled] = sum(torch._dynamo.utils.counters["graph_break"].values()) - broken
        torch._dynamo.reset()
        runs[compiled] = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        runs[compiled].append(load_file(out / "model.safetensors"))
    assert graphs[False] == 0 and graphs[True] > 0  # the setting reaches torch.compile
    assert breaks[True] == 0  # nothing in the step falls back to Python (a hand-set micro-batch: no eager step first)
    eager, compiled = runs[False], runs[True]
    assert [row["step"] for row in compiled[:-1]] == [1, 2]
    for row_eager, row_compiled in zip(eager[:-1], compiled[:-1]):
        assert row_compiled["loss"] == pytest.approx(row_eager["loss"], rel=1e-4)
        assert row_compiled["grad_norm"] == pytest.approx(row_eager["grad_norm"], rel=1e-3)
    assert eager[-1].keys() == compiled[-1].keys()
    for key, value in eager[-1].items():
        torch.testing.assert_close(compiled[-1][key], value, rtol=1e-4, atol=1e-5, msg=key)


def test_gradient_accumulation_and_precision():
    assert micro_batch.gradient_accumulation_steps(192, 24, 8) == 1
    assert micro_batch.gradient_accumulation_steps(192, 24, 1) == 8
    with pytest.raises(ConfigError, match="global_batch_size 10 is not a multiple of per_device_batch_size 4"):
        micro_batch.gradient_accumulation_steps(10, 4, 1)
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        assert micro_batch.precision_flags("bf16") == {"bf16": True, "fp16": False}
    else:  # Trainer's own refusal was a traceback, retried
        assert micro_batch.precision_flags("auto") == {"bf16": False, "fp16": False}
        with pytest.raises(ConfigError, match="^precision bf16 needs a CUDA GPU with bf16 arithmetic"):
            micro_batch.precision_flags("bf16")
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        micro_batch.precision_flags("fp8")


def test_problems_of_config_values_are_config_errors_naming_the_key(tmp_path, tiny_bert_dir, teacher_shard):
    out, ck = tmp_path / "out", tmp_path / "ck"

    def fails(match, **changes):
        values = {"recipe": "distilbiobert", "teacher_dir": tiny_bert_dir, "train": TRAIN, **changes}
        with pytest.raises(ConfigError, match=match):
            run(settings(shards=[teacher_shard], out=out, checkpoint_dir=ck, **values))

    fails(r"'models.tiny.recipe': unknown pre-training recipe 'distil'", recipe="distil")
    fails(r"'models.tiny.train': global_batch_size 10 is not a multiple", train=train_with(global_batch_size=10))
    if not torch.cuda.is_available():
        fails(r"'models.tiny.train': precision fp16 needs a CUDA GPU", train=train_with(precision="fp16"))
    fails(r"'models.tiny.recipe': recipe 'distilbiobert' distils a teacher, but no teacher folder", teacher_dir=None)
    fails(r"'models.tiny.recipe': recipe 'continual_mlm' continues a start model", recipe="continual_mlm")
    fails(
        r"'models.tiny.student': recipe 'continual_mlm' trains the start model as is",
        recipe="continual_mlm",
        start_dir=tiny_bert_dir,
        student={"num_hidden_layers": 2},
    )
    fails(
        r"'models.tiny.student': impossible layer mapping: teacher depth 4 is not a multiple of student depth 3",
        student={"num_hidden_layers": 3},
    )
    fails(
        r"'models.tiny.student': recipe 'tinybiobert' compares attention maps head by head",
        recipe="tinybiobert",
        student={**TINY_STUDENT, "num_attention_heads": 2},
    )
    assert not out.exists() and not ck.exists()


def test_a_bad_shard_is_an_input_error_and_nothing_is_written(tmp_path, tiny_bert_dir):
    bad = tmp_path / "bad-shard"
    datasets.Dataset.from_dict({"input_ids": [[1, 2]]}).save_to_disk(str(bad))
    with pytest.raises(InputError, match="special_tokens_mask"):
        run(settings("distilbiobert", [bad], tmp_path / "out", tmp_path / "ck", teacher_dir=tiny_bert_dir))
    assert not (tmp_path / "out").exists()


# --- settings: built once from the config, read back by torchrun workers ---------------------------------------------


def demo_config(**train_defaults):
    """The demo config, checked with the schema's defaults filled in as the workflow does (common.smk)."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["train_defaults"] = train_defaults
    validate(config, str(REPO / "config/schema.yaml"))
    return config


def test_settings_from_config_take_the_schemas_defaults(tmp_path):
    config = demo_config(max_steps=7)
    config["models"]["TinyBioBERT"]["seed"] = 3
    made = Settings.from_config(
        config,
        "TinyBioBERT",
        [tmp_path / "s0", tmp_path / "s1"],
        tmp_path / "out",
        tmp_path / "ckpt",
        teacher_dir=tmp_path / "teacher",
    )
    assert made == Settings(
        model_name="TinyBioBERT",
        recipe="tinybiobert",
        shard_dirs=(str(tmp_path / "s0"), str(tmp_path / "s1")),
        out_dir=str(tmp_path / "out"),
        checkpoint_dir=str(tmp_path / "ckpt"),
        teacher_dir=str(tmp_path / "teacher"),
        start_dir=None,
        student=config["models"]["TinyBioBERT"]["student"],
        seed=3,
        train=TrainSettings(
            max_steps=7,
            global_batch_size=192,
            per_device_batch_size="auto",
            learning_rate=5e-4,
            warmup_steps=0,
            weight_decay=1e-4,
            lr_scheduler="linear",
            mlm_probability=0.15,
            save_steps=2500,
            save_total_limit=2,
            logging_steps=250,
            teacher_dropout=True,
            max_grad_norm=1.0,
            precision="auto",
            dataloader_workers=0,
            compile=False,
            packing=False,
        ),
    )  # the row's weight decay
    assert Settings.from_config(config, "DistilBioBERT", [], "o", "c").seed == 42  # the schema's default seed
    with pytest.raises(ConfigError, match="'models': no row 'BioBERT' with a recipe"):
        Settings.from_config(config, "BioBERT", [], "o", "c")


def test_train_settings_outside_the_schema_are_config_errors():
    values = dataclasses.asdict(TRAIN)
    assert TrainSettings.from_dict(values, "models.x.train") == TRAIN
    with pytest.raises(ConfigError, match="'models.x.train': unknown train setting.*epochs"):
        TrainSettings.from_dict({**values, "epochs": 1}, "models.x.train")
    with pytest.raises(ConfigError, match="'models.x.train': no value for save_total_limit"):
        TrainSettings.from_dict({k: v for k, v in values.items() if k != "save_total_limit"}, "models.x.train")


def test_torchrun_workers_read_the_settings_back(tmp_path):
    made = settings(
        "tinybiobert",
        [tmp_path / "s0"],
        tmp_path / "out",
        tmp_path / "ckpt",
        teacher_dir=tmp_path,
        student=TINY_STUDENT,
        train=train_with(per_device_batch_size="auto"),
    )
    launch.write_settings(made, tmp_path / "settings.json")
    assert launch.read_settings(tmp_path / "settings.json") == made


def test_training_steps_read_nothing_back_from_the_device_between_logging_steps(
    tmp_path, tiny_bert_dir, mixed_lengths_shard, monkeypatch
):
    """Each host read of a device value (`.item()`, `bool(tensor)`, a selection by boolean mask, sized by its count)
    waits for the GPU to finish all queued work and leaves it idle until the host queues more. Between logging steps,
    a packed DistilBioBERT run (whose masks reach SDPA as they are) makes none, in its Trainer loop as in its step.
    Before, each micro-batch made 7: transformers' Trainer checked its loss for NaN on the host (2 reads;
    `logging_nan_inf_filter`, now off), and the objective selected rows by mask 5 times (now by the collator's
    indices)."""
    reads = [0]  # host reads of device values, per micro-batch since the last one began
    collating = [False]  # the collator's reads are of host tensors (in dataloader workers on a GPU machine)

    class CountingReads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            by_mask = func is torch.ops.aten.index.Tensor and any(
                i is not None and i.dtype == torch.bool for i in args[1]
            )
            host_read = by_mask or func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.nonzero.default)
            if host_read and not collating[0]:
                reads[-1] += 1
            return func(*args, **(kwargs or {}))

    def marking_step(self, *args, training_step=pretrain.PretrainTrainer.training_step, **kwargs):
        reads.append(0)
        return training_step(self, *args, **kwargs)

    def marked_collator(*args, masking_collator=pretrain.masking_collator):
        collator = masking_collator(*args)

        def collate(examples):
            collating[0] = True
            try:
                return collator(examples)
            finally:
                collating[0] = False

        return collate

    monkeypatch.setattr(pretrain.PretrainTrainer, "training_step", marking_step)
    monkeypatch.setattr(pretrain, "masking_collator", marked_collator)
    train = train_with(packing=True, max_steps=4, logging_steps=4)
    with CountingReads():
        run(settings("distilbiobert", [mixed_lengths_shard], tmp_path / "o", tmp_path / "c", train, tiny_bert_dir))
    micro_batches = reads[1:]
    assert len(micro_batches) == 8  # 4 steps of 2 micro-batches
    assert micro_batches[:-1] == [0] * 7 and micro_batches[-1] > 0  # the last: the log and the end of training


def loss_nan_from_step(monkeypatch, step: int, micro_batches: int = 2) -> None:
    """The objective's loss is NaN from optimizer step `step` on (TRAIN: 2 micro-batches per step)."""
    calls = [0]

    def nan_later(self, *args, forward=recipes.PretrainingObjective.forward, **kwargs):
        calls[0] += 1
        out = forward(self, *args, **kwargs)
        return {**out, "loss": out["loss"] * float("nan")} if calls[0] > micro_batches * (step - 1) else out

    monkeypatch.setattr(recipes.PretrainingObjective, "forward", nan_later)


def test_a_run_whose_loss_turns_nan_stops_at_that_log_in_one_line(tmp_path, tiny_bert_dir, teacher_shard, monkeypatch):
    """A loss that turns NaN at step 2 (of 4, logged every step) ends the run there with one line naming the model
    and the step; nothing is exported and no checkpoint holds the NaN step. Before, the Trainer's NaN filter logged
    the earlier steps' mean instead and the run trained NaN weights to the end and exported them."""
    loss_nan_from_step(monkeypatch, 2)
    out, checkpoints = tmp_path / "out", tmp_path / "ck"
    train = train_with(max_steps=4, logging_steps=1, save_steps=1)
    with pytest.raises(Diverged) as error:
        run(settings("distilbiobert", [teacher_shard], out, checkpoints, train, tiny_bert_dir, model_name="Tiny"))
    assert str(error.value).startswith("models.Tiny: the loss logged at step 2 is nan: training diverged;")
    assert not out.exists()
    assert sorted(p.name for p in checkpoints.glob("run-*/checkpoint-*")) == ["checkpoint-1"]


def test_a_retry_of_a_diverged_run_stops_before_loading_its_models(tmp_path, tiny_bert_dir, teacher_shard, monkeypatch):
    """A diverged run's retry (Snakemake's retries, SLURM's requeue) resumes its last checkpoint on the same batches
    and diverges again: it stops at once instead, in one line saying how to retry anyway. Before, each retry loaded,
    queued and trained up to save_steps steps to the same NaN."""
    loss_nan_from_step(monkeypatch, 2)
    out, checkpoints = tmp_path / "out", tmp_path / "ck"
    train = train_with(max_steps=3, save_steps=1)
    job = settings("distilbiobert", [teacher_shard], out, checkpoints, train, tiny_bert_dir, model_name="Tiny")
    with pytest.raises(Diverged, match="logged at step 2 is nan"):
        run(job)
    monkeypatch.undo()  # the loss is finite again: only the marker can stop the retry
    loaded = []
    monkeypatch.setattr(pretrain, "build_objective", lambda *args: loaded.append(args))
    with pytest.raises(Diverged) as error:
        run(job)
    assert loaded == []
    (marker,) = checkpoints.glob(f"run-*/{DIVERGED_FILE}")
    assert str(error.value).startswith("models.Tiny: the loss logged at step 2 is nan: training diverged;")
    assert str(error.value).endswith(f"delete {marker} to retry it anyway (from its last checkpoint, if any)")
    assert "\n" not in str(error.value)
    monkeypatch.undo()
    marker.unlink()  # the user's way to retry: resumes checkpoint-1 and, the loss finite now, finishes
    assert run(job)["resumed_from"].endswith("checkpoint-1") and out.is_dir()


@pytest.mark.parametrize("nan_from, kept", [(3, []), (5, ["checkpoint-3"])])
def test_a_loss_that_turns_nan_between_logs_is_caught_before_any_checkpoint_or_export(
    tmp_path, tiny_bert_dir, teacher_shard, monkeypatch, nan_from, kept
):
    """Logging every 4 steps and saving every 3 of 5: a NaN from step 3 is caught at step 3's checkpoint, before
    it is written; one from step 5, the last, before the export. Before, both were saved and the second exported."""
    loss_nan_from_step(monkeypatch, nan_from)
    out, checkpoints = tmp_path / "out", tmp_path / "ck"
    train = train_with(max_steps=5, logging_steps=4, save_steps=3)
    with pytest.raises(Diverged, match=f"logged at step {nan_from} is nan"):
        run(settings("distilbiobert", [teacher_shard], out, checkpoints, train, tiny_bert_dir))
    assert not out.exists()
    assert sorted(p.name for p in checkpoints.glob("run-*/checkpoint-*")) == kept


def test_a_process_that_sees_several_gpus_trains_on_one_with_the_configured_batch(monkeypatch, tmp_path):
    """One process that sees several GPUs would get DataParallel from the Trainer: a bigger global batch and the
    collator's indices split from their rows. It keeps to one GPU; several GPUs train through torchrun."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # what transformers counts as this process's GPUs
    args = pretrain.training_arguments(train_with(global_batch_size=8, per_device_batch_size=4), str(tmp_path), 1)
    assert args.n_gpu == 1 and args.train_batch_size == 4 and args.gradient_accumulation_steps == 2
