"""The tables (rules/tables.smk): NER F1 (ner_f1.py), model size and speed (model_stats.py), corpus and shards
(data_stats.py), each rendered by pandas through render.py."""
