"""The pipeline's steps from the command line, without Snakemake: `compact-biomed <step> --help` (not the demo's
generators, the NER archive's download, the model table or the figures, which run through `snakemake <target>`).

Hyper-parameters are read from the same config files the workflow uses, checked and completed with the schema's
defaults the same way, so a step run by hand does what the workflow's job would do; an option overrides its value.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from . import __version__
from . import config as cfg
from .io import InputError, check_replaceable
from .smk import CLEAN_ERRORS

# The clone's demo config, found beside the schema, so that a step run from a user's own folder finds it too.
DEMO_CONFIG = cfg.SCHEMA.parent / "config.yaml"


def load_config(paths: list[str], data_checks: bool = False) -> dict:
    """The config files, each a layer over the ones before as `snakemake --configfile a.yaml b.yaml` merges them,
    checked and completed as the workflow does."""
    from snakemake.utils import update_config

    config = {}
    for path in paths:
        update_config(config, read_yaml(path))
    cfg.check(config, data_checks=data_checks)
    return config


def config_names(args) -> str:
    """The --config files as the messages name them: a + b for a layer b over a."""
    return " + ".join(args.config)


def read_yaml(path: str) -> dict:
    existing(path)
    try:
        layer = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as error:
        raise InputError(path, yaml_problem(error)) from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InputError(path, f"not valid YAML ({' '.join(str(error).split())})") from None
    if not isinstance(layer, dict):
        raise InputError(path, "not a YAML mapping of settings")
    return layer


def section(config: dict, name: str) -> dict:
    """A section of a checked config; one only training needs (pubmed, tokenize) as the schema's defaults where
    this config has none."""
    return config[name] if name in config else cfg.schema_defaults(name)


def given(value, configured):
    """An option's value, or the config's where the option was left out."""
    return configured if value is None else value


def yaml_problem(error: yaml.MarkedYAMLError) -> str:
    """YAML's own error on one line: where it stopped, what it expected, and where the open construct began."""

    def at(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    where = f"{at(error.problem_mark)}: " if error.problem_mark else ""
    context = f"; {error.context} at {at(error.context_mark)}" if error.context and error.context_mark else ""
    return f"{where}not valid YAML ({error.problem or error.context}{context})"


def existing(*paths) -> None:
    """Named inputs must exist: a clear line here instead of a library's traceback later."""
    for path in paths:
        if path is not None and not Path(path).exists():
            raise InputError(path, "no such file or folder")


def check_new_files(args, *paths) -> None:
    """Refuse, before any work, an output file that exists: the CLI cannot tell a file it wrote from one of the
    user's (folder outputs name their step in a marker: io.check_replaceable). `--overwrite` replaces files."""
    seen = set()
    for path in filter(None, paths):
        check_replaceable(path)  # never a folder
        if not args.overwrite and os.path.lexists(path):
            raise InputError(path, "exists; give a new path, or --overwrite to replace it (nothing was changed)")
        if os.path.abspath(path) in seen:
            raise InputError(path, "is the output of two inputs or options; one would replace the other")
        seen.add(os.path.abspath(path))


def check_new_folder(args, path) -> None:
    """Refuse, before any work, a folder output that holds anything but an earlier output of this step
    (io.check_replaceable), and that too without `--overwrite`: by hand, the CLI cannot tell whether it is this
    run's own (the pipeline's results/ hold one per model and seed, which the tables read)."""
    check_replaceable(path, args.step)
    if not args.overwrite and Path(path).is_dir() and any(Path(path).iterdir()):
        raise InputError(
            path,
            f"holds an earlier '{args.step}' output; give a new folder, or --overwrite to replace it (nothing was changed)",
        )


def cmd_check_config(args):
    load_config(args.config, data_checks=True)
    print(f"{config_names(args)}: valid")


def cmd_fetch_pubmed(args):
    from . import pubmed

    base_url = given(args.base_url, section(load_config(args.config), "pubmed")["base_url"])
    check_new_files(args, *(path for name in args.names for path in pubmed.fetched_paths(name, args.out_dir)))
    for name in args.names:
        pubmed.fetch(name, args.out_dir, base_url=base_url, local_dir=args.local_dir)


def cmd_parse_pubmed(args):
    from . import pubmed

    outs = [
        Path(args.out_dir) / (Path(xml).name.removesuffix(".gz").removesuffix(".xml") + ".parquet") for xml in args.xml
    ]
    check_new_files(args, *outs)
    for xml in args.xml:  # as the workflow's job: against the md5 sidecar, before any output
        sidecar = Path(f"{xml}.md5")
        if sidecar.exists():
            pubmed.verify(xml, sidecar)
    for xml, out in zip(args.xml, outs):
        print(pubmed.parse_to_parquet(xml, out))


def cmd_fetch_huggingface_pubmed(args):
    from . import pubmed

    check_new_files(args, args.out)
    print(pubmed.huggingface_to_parquet(args.path, args.out, name=args.name, split=args.split, revision=args.revision))


def cmd_build_corpus(args):
    from . import corpus

    text_format = given(args.text_format, section(load_config(args.config), "pubmed")["text_format"])
    existing(*args.parsed)
    check_new_files(args, args.out, args.stats)
    print(corpus.build_corpus(args.parsed, args.out, args.stats, text_format=text_format))


def cmd_tokenize_shard(args):
    from . import shards

    settings = section(load_config(args.config), "tokenize")
    if not 0 <= args.shard < args.num_shards:
        raise cfg.ConfigError(
            f"--shard {args.shard} is outside 0..{args.num_shards - 1} (--num-shards {args.num_shards})"
        )
    existing(args.corpus, args.tokenizer)
    check_new_folder(args, args.out)
    print(
        shards.tokenize_shard(
            args.corpus,
            args.tokenizer,
            args.out,
            shard=args.shard,
            num_shards=args.num_shards,
            max_length=given(args.max_length, settings["max_length"]),
            mode=given(args.mode, settings["mode"]),
        )
    )


def cmd_shard_manifest(args):
    from . import shards

    check_new_files(args, args.out)
    shards.write_manifest(args.shards, args.out)


def cmd_base_model(args):
    from . import base_models

    known = base_models.sources(load_config(args.config))
    if args.model not in known:
        raise cfg.ConfigError(
            f"{args.model}: not a base model of {config_names(args)} (the teacher, or a continual model's start); "
            f"expected one of: {', '.join(known) or 'none in this config'}"
        )
    source = known[args.model]
    if "random" in source and args.corpus is None:
        raise cfg.ConfigError(
            f"{args.model} is a random demo model, whose tokenizer is trained on the corpus: give --corpus "
            "(the corpus Parquet, results/pubmed/corpus.parquet in the workflow)"
        )
    existing(args.corpus)
    check_new_folder(args, args.out)
    base_models.make(source, args.out, corpus=args.corpus)


def cmd_fetch_pretrained(args):
    from . import pretrained

    config = load_config(args.config)
    source = config["models"].get(args.model, {}).get("pretrained")
    if source is None:
        raise cfg.ConfigError(
            f"invalid config value at 'models.{args.model}': no such pretrained row in {config_names(args)}"
        )
    check_new_folder(args, args.out)
    provenance = pretrained.fetch(source, args.out, key=f"models.{args.model}.pretrained")
    print(pretrained.provenance_text(provenance))


def cmd_pretrain(args):
    from . import pretrain

    config = load_config(args.config)
    existing(*args.shards, args.teacher, args.start)
    check_new_folder(args, args.out)
    settings = pretrain.Settings.from_config(
        config, args.model, args.shards, args.out, args.checkpoint_dir, teacher_dir=args.teacher, start_dir=args.start
    )
    print(pretrain.run(settings))


def cmd_finetune_ner(args):
    from .ner.finetune import finetune

    config = load_config(args.config)
    existing(args.model_dir, args.data_dir)
    check_new_folder(args, args.out_dir)
    metrics = finetune(
        args.model_dir,
        args.data_dir,
        args.out_dir,
        seed=given(args.seed, config["ner"]["seeds"][0]),
        hparams=config["ner"]["hparams"],
    )
    print({split: metrics[split] for split in ("dev", "test")})


def cmd_ner_f1_table(args):
    from .tables import ner_f1

    config = load_config(args.config)
    existing(*args.metrics)
    check_new_files(args, args.markdown, args.csv, args.latex)
    ner_f1.write_tables(
        args.metrics,
        args.markdown,
        args.csv,
        models=cfg.table_models(config),
        datasets=config["ner"]["datasets"],
        mode=config["ner"]["table_mode"],
        latex_path=args.latex,
        published=config["ner"]["published"],
        demo=config["demo"]["enabled"],
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="compact-biomed", description=__doc__)
    top.add_argument("--version", action="version", version=f"compact-biomed {__version__}")
    steps = top.add_subparsers(dest="step", required=True)

    def step(name, func, help):
        sub = steps.add_parser(name, help=help)
        sub.set_defaults(func=func)
        return sub

    def with_overwrite(sub):
        sub.add_argument("--overwrite", action="store_true", help="replace existing output files")
        return sub

    def with_folder_overwrite(sub):
        sub.add_argument("--overwrite", action="store_true", help="replace an earlier output of this step")
        return sub

    def with_config(sub):
        sub.add_argument(
            "--config",
            action="append",
            help=f"workflow config (default: the demo's, {DEMO_CONFIG}); given again, a layer over the one before, "
            "merged as snakemake --configfile a.yaml b.yaml merges them",
        )
        return sub

    with_config(step("check-config", cmd_check_config, "validate a config file against the schema"))

    sub = with_overwrite(
        with_config(step("fetch-pubmed", cmd_fetch_pubmed, "download (or copy) baseline files and verify their md5"))
    )
    sub.add_argument("names", nargs="+", help="file names such as pubmed25n0001")
    sub.add_argument("--out-dir", required=True)
    sub.add_argument("--local-dir", help="take the files from this folder instead of downloading")
    sub.add_argument("--base-url", help="default: the config's pubmed.base_url")

    sub = with_overwrite(
        step(
            "parse-pubmed",
            cmd_parse_pubmed,
            "parse PubMed XML files, each into <out-dir>/<name>.parquet, after its md5 check where a <file>.md5 "
            "sidecar is beside it (the workflow's job requires one)",
        )
    )
    sub.add_argument("xml", nargs="+")
    sub.add_argument("--out-dir", required=True)

    sub = with_overwrite(
        step(
            "fetch-huggingface-pubmed",
            cmd_fetch_huggingface_pubmed,
            "stream the Hugging Face pubmed dataset (or a local copy) into the parsed Parquet layout",
        )
    )
    sub.add_argument("path", help="hub id or local folder")
    sub.add_argument("--out", required=True)
    sub.add_argument("--name")
    sub.add_argument("--split", default="train")
    sub.add_argument("--revision")

    sub = with_overwrite(
        with_config(
            step("build-corpus", cmd_build_corpus, "merge parsed files (in order) into the corpus Parquet table")
        )
    )
    sub.add_argument("parsed", nargs="+", help="Parquet files from parse-pubmed or fetch-huggingface-pubmed")
    sub.add_argument("--out", required=True)
    sub.add_argument("--stats", required=True)
    sub.add_argument("--text-format", choices=["title_abstract"], help="default: the config's pubmed.text_format")

    sub = with_folder_overwrite(
        with_config(step("tokenize-shard", cmd_tokenize_shard, "tokenise one shard of the corpus"))
    )
    sub.add_argument("--corpus", required=True)
    sub.add_argument("--tokenizer", required=True, help="a Hugging Face directory with a tokenizer")
    sub.add_argument("--out", required=True)
    sub.add_argument("--shard", type=int, required=True)
    sub.add_argument("--num-shards", type=int, required=True)
    sub.add_argument("--max-length", type=int, help="default: the config's tokenize.max_length")
    sub.add_argument("--mode", choices=["one_citation", "packed"], help="default: the config's tokenize.mode")

    sub = with_overwrite(step("shard-manifest", cmd_shard_manifest, "write the manifest of a tokenizer's shards"))
    sub.add_argument("shards", nargs="+")
    sub.add_argument("--out", required=True)

    sub = with_folder_overwrite(
        with_config(step("base-model", cmd_base_model, "the teacher or a start model as a local directory"))
    )
    sub.add_argument("model", help="'teacher' or a continual model's name")
    sub.add_argument("--out", required=True)
    sub.add_argument("--corpus", help="corpus Parquet (random demo models train their tokenizer on it)")

    sub = with_folder_overwrite(
        with_config(
            step(
                "fetch-pretrained",
                cmd_fetch_pretrained,
                "a published model row (hub at its pinned revision, or a local folder) as a directory",
            )
        )
    )
    sub.add_argument("model", help="a row of the config with `pretrained`")
    sub.add_argument("--out", required=True)

    sub = with_folder_overwrite(with_config(step("pretrain", cmd_pretrain, "pre-train one compact model")))
    sub.add_argument("model", help="a row of the config with a `recipe`")
    sub.add_argument("--shards", nargs="+", required=True)
    sub.add_argument("--out", required=True)
    sub.add_argument("--checkpoint-dir", required=True)
    sub.add_argument("--teacher", help="the teacher's folder (distillation recipes)")
    sub.add_argument("--start", help="the start model's folder (continual_mlm)")

    sub = with_folder_overwrite(
        with_config(step("finetune-ner", cmd_finetune_ner, "fine-tune and score one model on one NER dataset"))
    )
    sub.add_argument("--model-dir", required=True)
    sub.add_argument("--data-dir", required=True)
    sub.add_argument("--out-dir", required=True)
    sub.add_argument("--seed", type=int, help="default: the first of the config's ner.seeds")

    sub = with_overwrite(
        with_config(step("ner-f1-table", cmd_ner_f1_table, "F1 tables over seeds from metrics.json files"))
    )
    sub.add_argument("metrics", nargs="+")
    sub.add_argument("--markdown", required=True)
    sub.add_argument("--csv", required=True)
    sub.add_argument("--latex")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if hasattr(args, "config") and args.config is None:
        # Said, since its settings suit the demo's tiny models only (NER: learning rate 3e-3, not the paper's 5e-5)
        print(f"no --config: the demo's settings ({DEMO_CONFIG}); config/paper.yaml has the paper's", flush=True)
        args.config = [str(DEMO_CONFIG)]
    try:
        args.func(args)
    except CLEAN_ERRORS as error:  # the errors a workflow job reports in one line
        print(f"compact-biomed {args.step}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
