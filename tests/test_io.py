"""All-or-nothing outputs that never replace what their step did not write (the CLI and every Snakemake job)."""

import os
import stat

import pytest

from compact_biomed.io import OUTPUT_MARKER, InputError, atomic_path, output_step


def write_folder(path, step, files):
    with atomic_path(path, is_dir=True, step=step) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def test_folder_output_is_marked_and_replaces_only_its_own_step(tmp_path):
    out = tmp_path / "out"
    write_folder(out, "tokenize-shard", {"a.txt": "1", "b.txt": "2"})
    assert output_step(out) == "tokenize-shard"
    write_folder(out, "tokenize-shard", {"a.txt": "3"})  # a rerun replaces the whole previous output
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "a.txt"] and (out / "a.txt").read_text() == "3"
    with pytest.raises(InputError, match="'pretrain' did not write"):
        write_folder(out, "pretrain", {"x.txt": "x"})
    assert (out / "a.txt").read_text() == "3"


def test_unrelated_or_current_folder_is_refused_before_the_work_and_left_whole(tmp_path, monkeypatch):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep")
    (out / "sub" / "deep.txt").write_text("keep")
    ran = []
    with pytest.raises(InputError, match="non-empty folder"), atomic_path(out, is_dir=True, step="checkpoint"):
        ran.append(True)
    assert not ran
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["notes.txt", "sub", "sub/deep.txt"]
    monkeypatch.chdir(out)
    with pytest.raises(InputError, match=str(out)):
        write_folder(".", "checkpoint", {"x.txt": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # and no temporary folder left beside it


def test_empty_folder_is_used_and_a_file_never_replaces_a_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_folder(empty, "finetune-ner", {"metrics.json": "{}"})
    assert output_step(empty) == "finetune-ner"
    with pytest.raises(InputError, match="is a folder; expected a file"), atomic_path(empty) as tmp:
        tmp.write_text("x")
    assert (empty / "metrics.json").read_text() == "{}"
    with pytest.raises(ValueError, match="needs the step"), atomic_path(tmp_path / "other", is_dir=True):
        pass


def test_a_rerun_refuses_a_folder_holding_files_its_step_did_not_write(tmp_path):
    """The marker lists what the step wrote: a file added since (a user's notes) stops the rerun, all kept."""
    out = tmp_path / "out"
    write_folder(out, "finetune-ner", {"metrics.json": "{}", "predictions.tsv": "x"})
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"notes\.txt.*'finetune-ner' did not write"):
        write_folder(out, "finetune-ner", {"metrics.json": "{1}"})
    assert (out / "notes.txt").read_text() == "mine" and (out / "metrics.json").read_text() == "{}"
    (out / "notes.txt").unlink()
    write_folder(out, "finetune-ner", {"metrics.json": "{1}"})  # its own files only: replaced
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "metrics.json"]


def test_a_folder_output_gets_the_umask_permissions_not_the_temporary_folders(tmp_path):
    """A cluster's collaborators read the results: the folder's mode follows the umask as mkdir's would."""
    old = os.umask(0o022)
    try:
        write_folder(tmp_path / "out", "finetune-ner", {"metrics.json": "{}"})
        (tmp_path / "plain").mkdir()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755


def test_files_a_library_wrote_private_get_the_umask_permissions_too(tmp_path):
    """transformers saves model.safetensors 0600 beside 0644 files: collaborators could read everything but the
    weights. A script keeps its executable bit."""
    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out", is_dir=True, step="pretrain") as tmp:
            (tmp / "model.safetensors").write_bytes(b"weights")
            (tmp / "model.safetensors").chmod(0o600)
            (tmp / "run.sh").write_text("#!/bin/sh\n")
            (tmp / "run.sh").chmod(0o700)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out/model.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "out/run.sh").stat().st_mode) == 0o755


def test_a_folder_output_in_a_setgid_folder_keeps_the_bit_as_mkdir_would(tmp_path):
    """A group's shared project folder (chmod g+s): new folders in it keep the bit, so that files stay the group's."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o2775)
    write_folder(shared / "out", "finetune-ner", {"metrics.json": "{}"})
    (shared / "plain").mkdir()
    assert (shared / "plain").stat().st_mode & stat.S_ISGID  # what mkdir gives here
    assert stat.S_IMODE((shared / "out").stat().st_mode) == stat.S_IMODE((shared / "plain").stat().st_mode)


def test_a_failed_output_leaves_no_folder_it_created_for_itself(tmp_path):
    """A failing step leaves no partial output, not even the empty folders made to hold it; folders that were
    there before, or that hold something by now, stay."""
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new" / "deeper" / "out.parquet"):
        raise RuntimeError("bad input")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "kept" / "new" / "out", is_dir=True, step="s"):
        (tmp_path / "kept" / "new" / "written-meanwhile.txt").write_text("x")
        raise RuntimeError("bad input")
    assert sorted(p.name for p in (tmp_path / "kept").rglob("*")) == ["new", "written-meanwhile.txt"]


def test_snakemakes_timestamp_is_not_foreign_and_an_old_marker_is_named(tmp_path):
    out = tmp_path / "out"
    write_folder(out, "tokenize-shard", {"a.txt": "1"})
    (out / ".snakemake_timestamp").write_text("")  # Snakemake touches it in a finished directory() output
    write_folder(out, "tokenize-shard", {"a.txt": "2"})
    assert (out / "a.txt").read_text() == "2"
    (out / OUTPUT_MARKER).write_text("tokenize-shard\n")  # a marker from before file lists
    with pytest.raises(InputError, match="older 'tokenize-shard'"):
        write_folder(out, "tokenize-shard", {"a.txt": "3"})
    assert (out / "a.txt").read_text() == "2"
