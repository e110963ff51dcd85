"""Generate the embedded offline demo's inputs: a PubMed-format baseline and NER sets in BioBERT's layout.

Everything is drawn from a seeded generator, so the demo is the same on every machine. The vocabulary is
biomedical-looking on purpose: entity names share suffixes and context cues ("treated with", "diagnosed with"),
so a model that learns the language (and not just the training names) scores higher on the test names it has
never seen.
"""

from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path
from xml.sax.saxutils import escape

from .io import atomic_path, write_text

# Word pieces from which entity names are built: a stem and a class suffix, as real drug/disease names are.
STEMS = [
    "amlo",
    "bena",
    "cefo",
    "dexa",
    "etho",
    "fluo",
    "gaba",
    "hydro",
    "ibu",
    "keto",
    "lami",
    "meto",
    "napro",
    "oxa",
    "pira",
    "quina",
    "rani",
    "sulfa",
    "tetra",
    "valpro",
    "xylo",
    "zido",
    "cardi",
    "neuro",
    "hepa",
    "nephro",
    "derma",
    "arthro",
    "gastro",
    "pneumo",
    "myo",
    "osteo",
    "encephalo",
    "colo",
    "cysto",
]
ENTITY_SUFFIXES = {
    "chem": ["pril", "olol", "azole", "mycin", "statin", "profen", "dipine", "cillin", "oxetine", "parin"],
    "disease": ["itis", "oma", "pathy", "osis", "algia", "emia", "plasia", "trophy", "sclerosis", "uria"],
}
# Second words that make multi-word mentions (B I / B I I).
ENTITY_HEADS = {
    "chem": ["sodium", "hydrochloride", "acetate", "sulfate"],
    "disease": ["syndrome", "disease", "carcinoma", "failure", "injury"],
}
CONTEXTS = {
    "chem": [
        "Patients were treated with {e} for {n} weeks .",
        "Administration of {e} reduced the serum level of {o} .",
        "The dose of {e} was increased to {n} mg daily .",
        "{e} and {e2} were given in combination .",
        "No interaction between {e} and {o} was observed .",
    ],
    "disease": [
        "Patients diagnosed with {e} were enrolled .",
        "The incidence of {e} increased after {n} years .",
        "{e} is a common complication of {e2} .",
        "We report a case of {e} in a {n} year old man .",
        "Risk factors for {e} include {o} exposure .",
    ],
}
FILLER = [
    "The",
    "study",
    "included",
    "patients",
    "with",
    "normal",
    "renal",
    "function",
    "and",
    "no",
    "history",
    "of",
    "adverse",
    "events",
    "were",
    "recorded",
    "during",
    "follow",
    "-",
    "up",
    "in",
    "the",
    "cohort",
    ".",
]
OTHER_WORDS = ["smoking", "alcohol", "glucose", "protein", "plasma", "oxygen", "radiation", "stress"]
# The NER sets the demo generates (demo-<kind>) and where rules/demo.smk writes them.
NER_SETS = tuple(f"demo-{kind}" for kind in ENTITY_SUFFIXES)
NER_DIR = "resources/demo/ner"
PUBMED_DIR = "resources/demo/pubmed"  # the baseline files rules/demo.smk generates


def entity_names(kind: str, rng: random.Random) -> list[str]:
    """All stem+suffix names of one kind, shuffled: the first part is seen in training, the rest only in test."""
    names = [stem + suffix for stem in STEMS for suffix in ENTITY_SUFFIXES[kind]]
    rng.shuffle(names)
    return names


def mention(kind: str, names: list[str], rng: random.Random) -> list[str]:
    """One entity mention: a name, sometimes followed by a head word (a multi-word entity)."""
    words = [rng.choice(names)]
    if rng.random() < 0.3:
        words.append(rng.choice(ENTITY_HEADS[kind]))
    if rng.random() < 0.5:
        words[0] = words[0].capitalize()
    return words


def ner_sentence(kind: str, names: list[str], rng: random.Random) -> list[tuple[str, str]]:
    """A tagged sentence: (word, B/I/O) pairs from a context template, sometimes with filler words around it."""
    template = rng.choice(CONTEXTS[kind]).split()
    tagged: list[tuple[str, str]] = []
    if rng.random() < 0.4:
        tagged += [(w, "O") for w in rng.sample(FILLER[:-1], rng.randint(2, 5))]
    for slot in template:
        if slot in ("{e}", "{e2}"):
            words = mention(kind, names, rng)
            tagged += [(words[0], "B")] + [(w, "I") for w in words[1:]]
        elif slot == "{n}":
            tagged.append((str(rng.randint(2, 60)), "O"))
        elif slot == "{o}":
            tagged.append((rng.choice(OTHER_WORDS), "O"))
        else:
            tagged.append((slot, "O"))
    return tagged


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> None:
    """BioBERT's layout: token<TAB>tag per line, a blank line after each sentence."""
    write_text(path, "".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in sentences))


def write_ner_dataset(out_dir: str | Path, kind: str, seed: int, n_train: int, n_dev: int, n_test: int) -> None:
    """Write train/devel/test/train_dev.tsv of one demo NER set; test names are mostly unseen in training."""
    rng = random.Random(f"{kind}-{seed}")
    names = entity_names(kind, rng)
    cut = int(len(names) * 0.7)
    seen, unseen = names[:cut], names[cut:]
    train = [ner_sentence(kind, seen, rng) for _ in range(n_train)]
    dev = [ner_sentence(kind, seen, rng) for _ in range(n_dev)]
    test = [ner_sentence(kind, unseen if rng.random() < 0.6 else seen, rng) for _ in range(n_test)]
    out_dir = Path(out_dir)
    write_conll(out_dir / "train.tsv", train)
    write_conll(out_dir / "devel.tsv", dev)
    write_conll(out_dir / "test.tsv", test)
    write_conll(out_dir / "train_dev.tsv", train + dev)


def abstract_sentences(rng: random.Random, names: dict[str, list[str]], n: int) -> list[str]:
    """Plain-text abstract sentences mixing both entity kinds, in the NER sets' style."""
    out = []
    for _ in range(n):
        kind = rng.choice(["chem", "disease"])
        out.append(" ".join(w for w, _ in ner_sentence(kind, names[kind], rng)))
    return out


def citation_xml(pmid: int, rng: random.Random, names: dict[str, list[str]]) -> str:
    """One PubmedArticle element in the current baseline format (some with structured abstracts and markup)."""
    title = abstract_sentences(rng, names, 1)[0].rstrip(" .")
    if rng.random() < 0.1:  # MEDLINE marks translated titles with brackets; the paper's text format removes them
        title = f"[{title}]"
    sentences = [escape(s) for s in abstract_sentences(rng, names, rng.randint(2, 6))]
    if rng.random() < 0.2:
        sentences[0] = sentences[0].replace(" ", " <i>", 1) + "</i>"
    if rng.random() < 0.15:
        abstract = ""  # title-only records exist in PubMed and are kept by the paper's text format
    elif rng.random() < 0.3:
        half = max(1, len(sentences) // 2)
        abstract = (
            f'<Abstract><AbstractText Label="BACKGROUND">{" ".join(sentences[:half])}</AbstractText>'
            f'<AbstractText Label="RESULTS">{" ".join(sentences[half:])}</AbstractText></Abstract>'
        )
    else:
        abstract = f"<Abstract><AbstractText>{' '.join(sentences)}</AbstractText></Abstract>"
    year = rng.randint(1990, 2024)
    return (
        f'<PubmedArticle><MedlineCitation Status="MEDLINE" Owner="NLM">'
        f'<PMID Version="1">{pmid}</PMID><Article PubModel="Print">'
        f"<Journal><JournalIssue><PubDate><Year>{year}</Year></PubDate></JournalIssue></Journal>"
        f"<ArticleTitle>{escape(title)}</ArticleTitle>{abstract}<Language>eng</Language></Article>"
        f"</MedlineCitation></PubmedArticle>"
    )


def write_pubmed_file(path: str | Path, first_pmid: int, count: int, seed: int, delete: list[int] = ()) -> None:
    """Write one gzipped baseline-format file and its NCBI-style `.md5` sidecar."""
    rng = random.Random(seed)
    names = {kind: entity_names(kind, random.Random(f"{kind}-pubmed")) for kind in ENTITY_SUFFIXES}
    body = "".join(citation_xml(first_pmid + i, rng, names) for i in range(count))
    deletions = "".join(f'<PMID Version="1">{p}</PMID>' for p in delete)
    if deletions:
        body += f"<DeleteCitation>{deletions}</DeleteCitation>"
    xml = f'<?xml version="1.0" encoding="utf-8"?>\n<PubmedArticleSet>{body}</PubmedArticleSet>\n'
    data = gzip.compress(xml.encode(), mtime=0)  # mtime=0: identical bytes, identical md5, on every run
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    write_text(f"{path}.md5", f"MD5({path.name})= {hashlib.md5(data).hexdigest()}\n")
