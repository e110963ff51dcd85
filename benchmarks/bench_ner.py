"""Benchmark NER fine-tuning: length-grouped batches vs plain random batches, side by side.

Both arms run `compact_biomed.ner.finetune` on the same model, data, seed and hyper-parameters, with dynamic
padding (each batch padded to its longest window); the only difference is `group_by_length`:

* grouped  - shuffle, sort by length inside mega-batches of 50 batches, shuffle the batch order (ours);
* random   - random batches of the shuffled data (DataCollatorForTokenClassification without group_by_length).

Prints per arm: training samples/s, the share of padded positions the batching produces, test F1 (paper and
word scoring), and the speed ratio. The model is a random BERT whose WordPiece vocabulary is trained on the
training text (as the real-data test), so only the shared BC5CDR-chem files are needed; without them the
demo generator's data is used.

    python benchmarks/bench_ner.py                                   # 1500 BC5CDR-chem sentences, 2x128
    python benchmarks/bench_ner.py --train-sentences 4560 --layers 4 --hidden 256 --seeds 1 2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from compact_biomed import ner
from compact_biomed.checkpoints import random_init

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ner" / "BC5CDR-chem"


def padding_share(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Fraction of the padded batch positions that are padding."""
    padded = sum(len(b) * lengths[b].max() for b in batches)
    return 1.0 - lengths.sum() / padded


def batching_padding(model_dir: Path, data_dir: Path, hp: dict, seed: int) -> dict:
    """Padding share of one epoch's batches under each scheme, on the same tokenised training windows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    data = ner.load_dataset_dir(data_dir)
    label2id = {label: i for i, label in enumerate(data["labels"])}
    split = ner.encode_split(tokenizer, data["train"][: hp["max_train_sentences"]], label2id, hp["max_length"],
                             "paper", data_dir / "train.tsv")
    lengths = np.array([len(ids) for ids in split.input_ids])
    schemes = {"grouped": ner.length_grouped_batches, "random": ner.random_batches}
    return {name: padding_share(lengths, make(lengths, hp["batch_size"], np.random.default_rng(seed)))
            for name, make in schemes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--train-sentences", type=int, default=1500)
    parser.add_argument("--eval-sentences", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--vocab-size", type=int, default=4000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = args.data_dir
        if not data_dir.exists():
            from compact_biomed import demo

            data_dir = tmp / "demo-chem"
            demo.write_ner_dataset(data_dir, "chem", seed=0, n_train=args.train_sentences, n_dev=60, n_test=120)
            print(f"{args.data_dir} absent: using generated demo data")
        train = ner.read_split(data_dir / "train.tsv")[: args.train_sentences]
        model_dir = tmp / "model"
        random_init([" ".join(tokens) for tokens, _ in train], model_dir, "bert", lowercase=False,
                    vocab_size=args.vocab_size, seed=0,
                    config=dict(num_hidden_layers=args.layers, hidden_size=args.hidden, num_attention_heads=4,
                                intermediate_size=2 * args.hidden, max_position_embeddings=512))
        hp = dict(learning_rate=args.learning_rate, epochs=args.epochs, warmup_ratio=0.1, max_length=512,
                  max_train_sentences=args.train_sentences, max_eval_sentences=args.eval_sentences,
                  threads=args.threads)
        padding = batching_padding(model_dir, data_dir, ner.resolve_hparams(hp), args.seeds[0])

        runs = {"grouped": [], "random": []}
        for seed in args.seeds:
            for arm in runs:  # interleaved, so machine load drifts affect both arms alike
                metrics = ner.finetune(model_dir, data_dir, tmp / f"{arm}-{seed}", seed=seed,
                                       hparams={**hp, "group_by_length": arm == "grouped"})
                runs[arm].append(metrics)

    print(f"\n{data_dir.name}: {len(train)} train sentences, {args.epochs} epochs, BERT {args.layers}x{args.hidden}, "
          f"{args.threads} thread(s), seeds {args.seeds}")
    print(f"{'batching':<10}{'samples/s':>11}{'padding':>10}{'paper F1':>10}{'word F1':>10}")
    speed = {}
    for arm, metrics in runs.items():
        speed[arm] = statistics.median(m["train_samples_per_second"] for m in metrics)
        paper = statistics.mean(m["test"]["paper"]["f1"] for m in metrics)
        word = statistics.mean(m["test"]["word"]["f1"] for m in metrics)
        print(f"{arm:<10}{speed[arm]:>11.1f}{padding[arm]:>10.1%}{paper:>10.3f}{word:>10.3f}")
    print(f"speed-up grouped / random: {speed['grouped'] / speed['random']:.2f}x")


if __name__ == "__main__":
    main()
