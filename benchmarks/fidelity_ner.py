"""Fidelity of NER fine-tuning: the workflow's job (`compact_biomed.ner.finetune`) against an independent run of
the official ner.py protocol, on the same encoder, data and seeds (issue 14's fidelity target).

`reference` below is written from the official code's protocol (paper_spec §4.1) with transformers and seqeval
alone, nothing from this package: every piece of a word carries the word's tag, sequences cut at 512 pieces,
`Trainer` with random batches, lr 5e-5, batch 16, cosine schedule, weight decay 0.01; then seqeval over
sub-tokens ("paper" scoring) and over words, the first piece standing for its word ("word" scoring). Two
alignments make the same seed the same run on both sides: the head is drawn after `set_seed(seed)` (the official
code draws it from torch's unseeded start state) and the labels are sorted (the official code takes them from a
Python set, whose order changes with every process's hash seed). Two more choices follow the job, not the official
code: bf16 on CUDA (the official code ran fp32), and labels looked up by word index, so a word without sub-tokens
cannot shift the labels after it (the official code's shift, spec §4.1). On a CPU (fp32) the two then give the
same F1; on CUDA the job pads its batches to a multiple of 64, so the two may differ by bf16's rounding.

Arms, each seed of each arm a fresh process:
* reference - the official protocol, as above;
* job       - `compact_biomed.ner.finetune` with the schema's defaults (the paper's) and the same epochs;
* loop      - (--loop) the hand-written loop the job replaced (benchmarks/ner_loop.py), random batches.

It prints test F1 per arm and seed in both scorings and each arm's differences from the reference.

    PYTHONPATH=src python benchmarks/fidelity_ner.py --model-dir ENCODER --data-dir ../shared/data/ner/BC5CDR-disease \
        --seeds 1 2 3 --epochs 1 --loop --out fidelity.txt
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULT = "RESULT "  # a worker's last stdout line: RESULT <json>
ARMS = ("reference", "job", "loop")
SCORINGS = ("paper", "word")

# ---------------------------------------------------------------------------------------------------
# The reference: the official protocol with transformers and seqeval only


def read_tsv(path: Path) -> list[tuple[list[str], list[str]]]:
    """BioBERT's token<TAB>tag files, a blank line after each sentence."""
    sentences, tokens, tags = [], [], []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        if not line.strip():
            if tokens:
                sentences.append((tokens, tags))
            tokens, tags = [], []
            continue
        token, tag = line.split("\t")[:2]
        tokens.append(token.strip())
        tags.append(tag.strip())
    if tokens:
        sentences.append((tokens, tags))
    return sentences


def encode(tokenizer, sentences, label2id: dict) -> tuple[list[dict], list[list]]:
    """Features with every piece labelled by its word (special tokens -100), and each sentence's word ids."""
    encoded = tokenizer([tokens for tokens, _ in sentences], is_split_into_words=True, max_length=512, truncation=True)
    features, word_ids = [], []
    for k, (_, tags) in enumerate(sentences):
        ids = encoded.word_ids(k)
        labels = [-100 if w is None else label2id[tags[w]] for w in ids]
        features.append({"input_ids": encoded["input_ids"][k], "labels": labels})
        word_ids.append(ids)
    return features, word_ids


def scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {"precision": precision_score(gold, pred), "recall": recall_score(gold, pred), "f1": f1_score(gold, pred)}


def reference_scores(trainer, sentences, features, word_ids, labels: list[str]) -> dict:
    """Both scorings of one split: sub-tokens where the label is not -100, and words by their first piece."""
    output = trainer.predict(features)
    best = output.predictions.argmax(-1)
    gold_pieces, pred_pieces, pred_words = [], [], []
    for k, (tokens, _) in enumerate(sentences):
        n = len(features[k]["input_ids"])
        gold, pred = output.label_ids[k, :n], best[k, :n]
        keep = gold != -100
        gold_pieces.append([labels[i] for i in gold[keep]])
        pred_pieces.append([labels[i] for i in pred[keep]])
        words = ["O"] * len(tokens)  # words cut off at 512 pieces stay "O"
        for position, word in enumerate(word_ids[k]):
            if word is not None and (position == 0 or word_ids[k][position - 1] != word):
                words[word] = labels[pred[position]]
        pred_words.append(words)
    return {
        "paper": scores(gold_pieces, pred_pieces),
        "word": scores([tags for _, tags in sentences], pred_words),
    }


def reference(model_dir, data_dir, seed: int, hp: dict) -> dict:
    """Fine-tune and score dev (train_dev.tsv after train.tsv's sentences, else devel.tsv) and test:
    {split: {scoring: scores}}."""
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    data_dir = Path(data_dir)
    train = read_tsv(data_dir / "train.tsv")
    train_dev = data_dir / "train_dev.tsv"
    dev = read_tsv(train_dev)[len(train) :] if train_dev.exists() else read_tsv(data_dir / "devel.tsv")
    splits = {"dev": dev, "test": read_tsv(data_dir / "test.tsv")}
    labels = sorted({tag for _, tags in train for tag in tags})
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=len(labels))
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            seed=seed,
            learning_rate=hp["learning_rate"],
            lr_scheduler_type="cosine",
            per_device_train_batch_size=hp["batch_size"],
            per_device_eval_batch_size=hp["batch_size"],
            weight_decay=0.01,
            num_train_epochs=hp["epochs"],
            bf16=hp["bf16"],
            eval_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=encode(tokenizer, train, label2id)[0],
            data_collator=DataCollatorForTokenClassification(tokenizer),
        )
        trainer.train()
        return {
            name: reference_scores(trainer, sentences, *encode(tokenizer, sentences, label2id), labels)
            for name, sentences in splits.items()
        }


# ---------------------------------------------------------------------------------------------------
# Workers and driver


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    hp = {"epochs": args.epochs, "learning_rate": args.learning_rate, "batch_size": args.batch_size}
    started = time.time()
    if args.worker == "reference":
        result = reference(args.model_dir, args.data_dir, args.seed, {**hp, "bf16": torch.cuda.is_available()})
    elif args.worker == "loop":
        sys.path.insert(0, str(HERE))
        import ner_loop

        result = ner_loop.finetune(args.model_dir, args.data_dir, args.seed, hp)
    else:
        from compact_biomed.ner import finetune as ner_finetune

        with tempfile.TemporaryDirectory() as tmp:
            result = ner_finetune.finetune(args.model_dir, args.data_dir, Path(tmp) / "run", args.seed, hp)
    f1 = {split: {mode: result[split][mode]["f1"] for mode in SCORINGS} for split in ("dev", "test")}
    print(RESULT + json.dumps({"arm": args.worker, "seed": args.seed, "seconds": time.time() - started, **f1}))


def run_all(args, jobs: list[tuple[str, int]]) -> list[dict]:
    """Run the (arm, seed) workers, `args.parallel` at a time; a failed worker stops the benchmark."""
    from compact_biomed.smk import prepend_pythonpath

    prepend_pythonpath(REPO / "src")  # the workers import this checkout's package
    results, running = [], []
    with tempfile.TemporaryDirectory(prefix="fidelity-ner-") as logs:
        while jobs or running:
            while jobs and len(running) < args.parallel:
                arm, seed = jobs.pop(0)
                log = Path(logs) / f"{arm}-{seed}.log"
                command = [sys.executable, __file__, "--worker", arm, "--seed", str(seed), *forwarded(args)]
                with log.open("w") as out:  # the worker holds its own copy of the file
                    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
                running.append((process, log))
            while all(process.poll() is None for process, _ in running):
                time.sleep(1)
            process, log = next(job for job in running if job[0].poll() is not None)
            running.remove((process, log))
            lines = log.read_text(errors="replace").splitlines()
            if process.returncode or not lines or not lines[-1].startswith(RESULT):
                for other, _ in running:
                    other.kill()
                sys.exit(f"worker {log.stem} failed ({process.returncode}); its log ends:\n" + "\n".join(lines[-15:]))
            results.append(json.loads(lines[-1][len(RESULT) :]))
    return results


def forwarded(args) -> list[str]:
    return [
        *("--model-dir", str(args.model_dir), "--data-dir", str(args.data_dir), "--epochs", str(args.epochs)),
        *("--learning-rate", str(args.learning_rate), "--batch-size", str(args.batch_size)),
        *("--threads", str(args.threads)),
    ]


def report(results: list[dict], arms: list[str]) -> list[str]:
    """Per arm and seed the test F1 in both scorings; per arm the differences from the reference's same seed."""
    by = {(r["arm"], r["seed"]): r for r in results}
    seeds = sorted({r["seed"] for r in results})
    lines = ["arm        seed  paper F1  word F1   paper diff  word diff   seconds"]
    for arm in arms:
        for seed in seeds:
            row, ref = by[arm, seed], by["reference", seed]
            diff = [row["test"][mode] - ref["test"][mode] for mode in SCORINGS]
            lines.append(
                f"{arm:<10} {seed:>4}  {row['test']['paper']:.4f}    {row['test']['word']:.4f}    "
                f"{diff[0]:+.4f}     {diff[1]:+.4f}     {row['seconds']:.0f}"
            )
    lines.append("")
    for arm in arms[1:]:
        for mode in SCORINGS:
            diffs = [by[arm, s]["test"][mode] - by["reference", s]["test"][mode] for s in seeds]
            spread = statistics.stdev(by["reference", s]["test"][mode] for s in seeds) if len(seeds) > 1 else 0.0
            lines.append(
                f"{arm} - reference, {mode} scoring: mean {statistics.fmean(diffs):+.4f}, range "
                f"[{min(diffs):+.4f}, {max(diffs):+.4f}] over {len(seeds)} seeds (reference's seed sd {spread:.4f})"
            )
    return lines


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="a masked-LM or encoder folder with tokenizer")
    parser.add_argument("--data-dir", type=Path, required=True, help="a BioBERT-format NER folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--loop", action="store_true", help="also run the hand-written loop the job replaced")
    parser.add_argument("--parallel", type=int, default=2, help="workers at once (default 2: one per core here)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--worker", choices=ARMS, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    if args.worker:
        worker(args)
        return 0
    arms = list(ARMS if args.loop else ARMS[:2])
    started = time.time()
    results = run_all(args, [(arm, seed) for seed in args.seeds for arm in arms])
    header = (
        f"NER fidelity: {args.model_dir.name} on {args.data_dir.name}, {args.epochs} epochs, lr {args.learning_rate}, "
        f"batch {args.batch_size}, seeds {args.seeds}; test F1"
    )
    text = "\n".join([header, *report(results, arms), f"total {time.time() - started:.0f} s"])
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
