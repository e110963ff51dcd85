"""NER fine-tuning: one job (finetune.py) from the model (model.py), its windows (encode.py), the Trainer (train.py)
and seqeval (scoring.py); the data (data.py) and the published NER sets (archive.py)."""

# The two scoring protocols of a fine-tuned model's predictions (ner.scoring.score_split), the values of the results'
# `mode` column and of published_f1.tsv's `scoring`: "paper" = entity F1 over sub-tokens, every piece carrying its
# word's tag (the official ner.py); "word" = entity F1 over words, the first piece standing for the word.
SCORINGS = ("paper", "word")

# ner.hparams that change a run's speed or its log, not its results: seeds that differ only in these share a table
# cell (tables.ner_f1 refuses seeds that differ in any other).
SPEED_ONLY_HPARAMS = ("threads", "logging_steps", "eval_batch_size", "pad_to_multiple_of")
