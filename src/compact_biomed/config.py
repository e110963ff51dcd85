"""Workflow configuration: schema validation with one-line errors, and the derived lists the rules need."""

from __future__ import annotations

import copy
import difflib
import functools
import os
import re
from pathlib import Path

import jsonschema
import yaml
from jsonschema.exceptions import best_match

from . import demo
from .io import InputError, output_step
from .ner import archive as ner_archive
from .ner import data as ner_data

CLONE = Path(__file__).resolve().parents[2]  # the checkout this package runs from
SCHEMA = CLONE / "config" / "schema.yaml"  # absent only in a wheel install


class ConfigError(ValueError):
    """An invalid config value; the message names the key."""


def dotted(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def check(config: dict, schema_path: str | Path = SCHEMA, slow_checks: bool = True, data_checks: bool = False) -> None:
    """Validate `config` against the JSON schema and fill in the schema's defaults (in place, once, for the
    workflow and the CLI alike); raise ConfigError naming the first offending key.

    `slow_checks=False` skips the checks that import transformers and torch (about 2 s): architecture keys and
    pretrained rows' local folders. Snakemake's job processes re-read a config that the main process checked.
    `data_checks` reads every line of the local NER sets (about 0.4 s for BC5CDR-disease): for the workflow's
    start and check-config, not for every step run by hand."""
    schema = load_schema(schema_path)
    raise_first(filling_validator(schema).iter_errors(config), where=[])
    expand_home(config)
    find_clone_file(config)
    check_consistency(config)
    if slow_checks:
        check_architectures(config)
        check_pretrained_folders(config)
    if data_checks:
        check_local_pubmed(config)
        check_local_datasets(config)
        check_published(config)


def check_part(value: dict, key: str, schema_path: str | Path = SCHEMA) -> None:
    """Check one section of a config, e.g. `ner.hparams` given to a Python function, as `check` does: filled
    with the schema's defaults, or ConfigError naming the key."""
    raise_first(part_validator(key, schema_path).iter_errors(value), where=key.split("."))


def schema_defaults(key: str, schema_path: str | Path = SCHEMA) -> dict:
    """The schema's defaults of a section, e.g. `pubmed` for a CLI step given a config without that section."""
    section = {}
    for _ in part_validator(key, schema_path).iter_errors(section):
        pass  # an empty section lacks its required keys; only the defaults filled in are wanted
    return section


def part_validator(key: str, schema_path: str | Path) -> jsonschema.Validator:
    schema = load_schema(schema_path)
    part = schema
    for name in key.split("."):
        part = part["properties"][name]
    return filling_validator({**part, "$defs": schema["$defs"]})


def load_schema(schema_path: str | Path) -> dict:
    try:
        return yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(schema_path, f"cannot read the config schema ({error.strerror})") from None


def raise_first(errors, where: list[str]) -> None:
    error = best_match(errors)
    if error is not None:
        raise ConfigError(
            f"invalid config value at '{dotted([*where, *error.absolute_path])}': {message(error)}{number_hint(error)}"
        )


def message(error) -> str:
    """The validator's message, but for a key that needs another: jsonschema says "'revision' is a dependency of
    'hub_id'"; this says what to add, with the schema's description of it."""
    if error.validator != "dependentRequired":
        return error.message
    needed = [key for keys in error.validator_value.values() for key in keys if key not in error.instance]
    given = [key for key, keys in error.validator_value.items() if key in error.instance and needed[0] in keys]
    about = error.schema.get("properties", {}).get(needed[0], {}).get("description")
    return f"'{given[0]}' needs '{needed[0]}' beside it" + (f" ({about})" if about else "")


NESTED_CONFIG = " a nested snakemake --config value is always text: give it in a second --configfile"


def number_hint(error) -> str:
    """How to write a number that arrived as text: PyYAML (YAML 1.1) reads 3e-3 and 1.0e5 as strings (a float
    needs a dot and a signed exponent), and a quoted value or a nested `snakemake --config` value is one too."""
    value, expected = error.instance, error.validator_value
    if error.validator != "type" or not isinstance(value, str):
        return ""
    expected = {expected} if isinstance(expected, str) else set(expected)
    try:
        number = float(value)
    except ValueError:
        return ""
    if "integer" in expected and number.is_integer():
        return f" (write it as a number: {int(number)};{NESTED_CONFIG})"
    if "number" not in expected:
        return ""
    if "e" in value.lower():
        mantissa, exponent = re.split("[eE]", value)
        mantissa = mantissa if "." in mantissa else f"{mantissa}.0"
        exponent = exponent if exponent[:1] in "+-" else f"+{exponent}"
        return f" (YAML reads {value} as text: write {mantissa}e{exponent};{NESTED_CONFIG})"
    return f" (a number given as text: quoted in YAML;{NESTED_CONFIG})"


def filling_validator(schema: dict) -> jsonschema.Validator:
    """A validator that also sets every absent property that has a `default` (the jsonschema FAQ's recipe, as
    snakemake.utils.validate's), so the schema is the one place defaults are written down."""

    def set_defaults(validator, properties, instance, schema):
        if validator.is_type(instance, "object"):
            for name, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))  # a copy: nested ones get filled
        yield from validate_properties(validator, properties, instance, schema)

    validate_properties = jsonschema.Draft202012Validator.VALIDATORS["properties"]
    filling = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": set_defaults})
    return filling(schema)


# Keys only a model trained here has; a pretrained row is fine-tuned as it is.
TRAINED_KEYS = ("recipe", "student", "start", "train")
# What pre-training needs; a config of published models only (config/released.yaml) needs none of it.
TRAINING_SECTIONS = ("pubmed", "tokenize", "teacher", "train_defaults")


def expand_home(config: dict) -> None:
    """A path given as ~/... is the user's folder (in place): Snakemake and transformers take the ~ as a name."""
    sections = [model.get("pretrained", {}) for model in config["models"].values()]
    sections += [config["ner"], config.get("pubmed", {}), config.get("pubmed", {}).get("huggingface") or {}]
    for section in sections:
        for key in ("path", "data_dir", "local_dir", "published"):
            if isinstance(section.get(key), str) and section[key].startswith("~"):
                section[key] = os.path.expanduser(section[key])


def find_clone_file(config: dict) -> None:
    """ner.published given relative (the default: config/published_f1.tsv) and not in the working folder is the
    clone's own file (in place): a step run by hand from a data folder would otherwise not find it."""
    path = config["ner"].get("published")
    if path and not Path(path).is_absolute() and not Path(path).exists() and (CLONE / path).is_file():
        config["ner"]["published"] = str(CLONE / path)


def check_consistency(config: dict) -> None:
    """Rules the schema cannot express."""
    for name, model in config["models"].items():
        check_row(name, model)
    trained = trained_models(config)
    missing = [section for section in TRAINING_SECTIONS if section not in config]
    if trained and missing:
        raise ConfigError(f"invalid config value at '{missing[0]}': required to train models.{trained[0]}")
    teacher = config.get("teacher", {}).get("name")
    if teacher in config["models"]:
        raise ConfigError(f"invalid config value at 'teacher.name': '{teacher}' is also a model name")
    files = config.get("pubmed", {}).get("files")
    if isinstance(files, dict) and files["first"] > files["last"]:
        raise ConfigError("invalid config value at 'pubmed.files': first is after last")
    check_datasets(config)


def dataset_source(config: dict, name: str) -> str:
    """Where the NER set `name` comes from: BioBERT's `archive` (one of its sets, with ner.archive_url), the
    `demo` generator, or else a `local` folder of the user's under ner.data_dir, read as it is."""
    ner = config["ner"]
    if ner.get("archive_url") and name in ner_archive.NER_SETS:
        return "archive"
    if config.get("demo", {}).get("enabled") and Path(ner["data_dir"]) == Path(demo.NER_DIR):
        return "demo"
    return "local"


def check_datasets(config: dict) -> None:
    """Every NER dataset is one its source has, so a misspelt name stops the run before any job starts."""
    for name in config["ner"]["datasets"]:
        problem = dataset_problem(config, name)
        if problem:
            raise ConfigError(f"invalid config value at 'ner.datasets': '{name}' {problem}")


def dataset_problem(config: dict, name: str) -> str | None:
    source, data_dir = dataset_source(config, name), Path(config["ner"]["data_dir"])
    folder = data_dir / name
    if source == "archive" and folder.is_dir() and any(folder.iterdir()) and output_step(folder) != "fetch-ner":
        # Snakemake would delete the rule's .tsv outputs there before fetch_ner ran
        return (
            f"would be extracted from ner.archive_url into {folder}, but {folder} holds files fetch_ner did not "
            f"write: set ner.archive_url to null to use the folders as they are, rename it to use it beside the "
            f"archive's sets, or choose another ner.data_dir"
        )
    if source == "demo" and name not in demo.NER_SETS:
        return (
            f"is not a demo dataset (the demo generates {', '.join(demo.NER_SETS)} into {demo.NER_DIR}; for sets "
            "of your own, set ner.data_dir to the folder that holds them)"
        )
    if source == "local":
        try:
            ner_data.split_files(folder)
        except InputError as error:
            if config["ner"].get("archive_url"):
                return (
                    f"is not in BioBERT's NER archive (its sets: {', '.join(ner_archive.NER_SETS)}) nor a folder "
                    f"of your own in {data_dir} ({error})"
                )
            return f"has no data ({error})"
    return None


def check_local_pubmed(config: dict) -> None:
    """Every baseline file a trained model needs is in pubmed.local_dir before any job starts: with one missing,
    Snakemake would not stop but tokenize an earlier run's corpus (parse_pubmed cannot run, and the corpus it
    feeds counts as an input that exists). The demo's folder is generated by the pipeline itself."""
    local = config.get("pubmed", {}).get("local_dir")
    if not local or not trained_models(config):
        return
    if config.get("demo", {}).get("enabled") and Path(local) == Path(demo.PUBMED_DIR):
        return
    names = pubmed_names(config)
    missing = [
        path
        for name in names
        for path in (Path(local) / f"{name}.xml.gz", Path(local) / f"{name}.xml.gz.md5")
        if not path.is_file()
    ]
    if missing:
        more = f" (and {len(missing) - 1} more of the {2 * len(names)})" if len(missing) > 1 else ""
        raise ConfigError(
            f"invalid config value at 'pubmed.local_dir': {missing[0]} is missing{more}; the folder holds "
            "<name>.xml.gz and <name>.xml.gz.md5 for every name of pubmed.files (null: download them)"
        )


def check_published(config: dict) -> None:
    """The published-values file is read as the table reads it, at the start rather than by the run's last job."""
    from .tables.ner_f1 import read_published

    path = config["ner"].get("published")
    if not path:
        return
    if not Path(path).is_file():
        raise ConfigError(f"invalid config value at 'ner.published': {path} is no file (null: compare with none)")
    try:
        read_published(path)
    except InputError as error:
        raise ConfigError(f"invalid config value at 'ner.published': {error}") from None


def check_local_datasets(config: dict) -> None:
    """A local NER set's lines are read as fine-tuning reads them: a bad line stops the run before any job (the
    first fine-tuning job found it, after any pre-training). Fetched and generated sets are the pipeline's own."""
    for name in config["ner"]["datasets"]:
        if dataset_source(config, name) == "local":
            try:
                ner_data.load_dataset_dir(Path(config["ner"]["data_dir"]) / name)
            except InputError as error:
                raise ConfigError(f"invalid config value at 'ner.datasets': '{name}' has bad data ({error})") from None


def check_architectures(config: dict) -> None:
    """Architecture keys are attributes of their transformers config class: the class would store a misspelt key
    and build the model with the default."""
    for where, model_type, keys in architecture_blocks(config):
        known = config_keys(model_type)
        for key in keys:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"invalid config value at '{where}': '{key}' is not a {model_type} config key{hint}")


def architecture_blocks(config: dict):
    """(config key, model type, architecture keys) of every random model and distillation student."""
    random = config.get("teacher", {}).get("random")
    if random:
        yield "teacher.random.config", random["model_type"], random["config"]
    for name, model in config["models"].items():
        if "student" in model:  # the teacher's config with these keys changed; recipes need a BERT teacher
            yield f"models.{name}.student", "bert", model["student"]
        random = model.get("start", {}).get("random")
        if random:
            yield f"models.{name}.start.random.config", random["model_type"], random["config"]


@functools.cache
def config_keys(model_type: str) -> frozenset[str]:
    from transformers import AutoConfig  # here, not at the top: it imports torch (about 2 s)

    config = AutoConfig.for_model(model_type)
    return frozenset(config.to_dict()) | frozenset(config.attribute_map)


def check_row(name: str, model: dict) -> None:
    """A row is trained here (`recipe`) or published (`pretrained`: a hub id or a local encoder folder)."""
    key = f"models.{name}"
    if "pretrained" not in model:
        if "recipe" not in model:
            raise ConfigError(
                f"invalid config value at '{key}': give 'recipe' (train it) or 'pretrained' (a published model)"
            )
        return
    for extra in TRAINED_KEYS:
        if extra in model:
            raise ConfigError(
                f"invalid config value at '{key}.{extra}': a pretrained row is fine-tuned as it is, "
                f"not trained; remove '{extra}' or 'pretrained'"
            )
    source = model["pretrained"]
    if ("hub_id" in source) == ("path" in source):
        raise ConfigError(
            f"invalid config value at '{key}.pretrained': give exactly one of 'hub_id' (with 'revision') or 'path'"
        )
    hub_only = sorted(set(source) - {"path"}) if "path" in source else []
    if hub_only:
        raise ConfigError(
            f"invalid config value at '{key}.pretrained': a local folder ('path') takes no {', '.join(hub_only)}: "
            f"its weights and tokenizer are the folder's own"
        )


def check_pretrained_folders(config: dict) -> None:
    """A pretrained row's local folder is an encoder with weights and a tokenizer."""
    from .pretrained import encoder_problem  # imports transformers' model tables

    for name, model in config["models"].items():
        path = model.get("pretrained", {}).get("path")
        problem = encoder_problem(Path(path)) if path else None
        if problem:
            raise ConfigError(f"invalid config value at 'models.{name}.pretrained.path': {path}: {problem}")


def pubmed_names(config: dict) -> list[str]:
    """Baseline file names, from an explicit list or a {prefix, first, last} range (pubmed25n0001...); none
    when the corpus comes from the Hugging Face dataset."""
    if config["pubmed"].get("source") == "huggingface":
        return []
    files = config["pubmed"]["files"]
    if isinstance(files, list):
        return list(files)
    return [f"{files['prefix']}{i:04d}" for i in range(files["first"], files["last"] + 1)]


def train_settings(config: dict, model: str) -> dict:
    """A model's training hyper-parameters: train_defaults overridden by the model's own `train` block."""
    settings = copy.deepcopy(config["train_defaults"])
    settings.update(config["models"][model].get("train", {}))
    return settings


# Train settings that make the same model faster or leaner (README, config/README): changing them must not redo a
# finished pre-training, nor every fine-tuning after it.
SPEED_TRAIN_KEYS = ("compile", "packing", "per_device_batch_size", "dataloader_workers")


def learning_settings(config: dict, model: str) -> dict:
    """The train settings of `model` that can change the trained model: all but SPEED_TRAIN_KEYS."""
    return {key: value for key, value in train_settings(config, model).items() if key not in SPEED_TRAIN_KEYS}


def tokenizer_owner(config: dict, model: str) -> str:
    """Whose tokenizer a model's pre-training data uses: the teacher's for distillation, its own otherwise."""
    return model if config["models"][model]["recipe"] == "continual_mlm" else "teacher"


def tokenizer_owners(config: dict) -> list[str]:
    return sorted({tokenizer_owner(config, m) for m in trained_models(config)})


def trained_models(config: dict) -> list[str]:
    """The models this pipeline pre-trains (a `recipe`), in config order."""
    return [m for m, model in config["models"].items() if "recipe" in model]


def pretrained_models(config: dict) -> list[str]:
    """The published models fine-tuned as they are (a `pretrained` source), in config order."""
    return [m for m, model in config["models"].items() if "pretrained" in model]


def teacher_name(config: dict) -> str | None:
    """The teacher's row name; only a config that trains a model has a teacher (nothing builds it otherwise)."""
    return config["teacher"]["name"] if trained_models(config) else None


def table_models(config: dict) -> list[str]:
    """Rows of the results table in config order: the teacher baseline (when there is one), then the models."""
    teacher = teacher_name(config)
    return [*([teacher] if teacher else []), *config["models"]]
