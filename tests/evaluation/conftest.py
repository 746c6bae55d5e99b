"""Fixtures of the evaluation tests: small SentEval-layout data sets written in the files' real formats.

The transfer data is synthetic but follows each file's format and encoding exactly (latin-1 for MR/CR/SUBJ/MPQA
and TREC, UTF-8 with a byte-order mark and a header line for MRPC, ``sentence \\t label`` for SST), so the readers
are exercised as on SentEval's files; the classes are separable by wording, so a real encoder scores well.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import torch

from dalr_hf.evaluation.data import bundled_data_dir

POSITIVE = ["great", "excellent", "wonderful", "superb", "delightful", "brilliant", "lovely", "fantastic", "moving"]
NEGATIVE = ["terrible", "awful", "horrible", "dreadful", "boring", "dull", "bad", "disappointing", "painful"]
TOPICS = ["movie", "film", "story", "acting", "plot", "music", "ending", "script", "cast", "direction"]
OBJECTS = ["phone", "camera", "battery", "screen", "player", "speaker", "router", "keyboard"]


def _sentiment(rng: random.Random, positive: bool, topics: list[str]) -> str:
    words = POSITIVE if positive else NEGATIVE
    return f"the {rng.choice(topics)} was {rng.choice(words)} and {rng.choice(words)} ."


def _write_lines(path: Path, lines: list[str], encoding: str = "utf-8", bom: bool = False, newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = newline.join(lines).encode(encoding) + newline.encode()
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)


TREC_TEMPLATES = {
    "ABBR": ("abb", ["What does {x} stand for ?", "What is the abbreviation for {x} ?"]),
    "DESC": ("def", ["What is the definition of {x} ?", "Why does {x} happen ?"]),
    "ENTY": ("animal", ["What animal is called {x} ?", "What kind of plant is {x} ?"]),
    "HUM": ("ind", ["Who invented {x} ?", "Who was the first person to see {x} ?"]),
    "LOC": ("city", ["Where is {x} located ?", "In which country is {x} ?"]),
    "NUM": ("count", ["How many {x} are there ?", "How much does {x} cost ?"]),
}
NOUNS = [
    "NASA",
    "the telescope",
    "penicillin",
    "the panda",
    "Paris",
    "the violin",
    "radar",
    "the glacier",
    "Lagos",
    "the marathon",
    "DNA",
    "the comet",
]


def write_transfer_data(root: Path, n_per_class: int = 50, seed: int = 0) -> Path:
    """MR, CR, SUBJ, MPQA, SST/binary, TREC and MRPC in SentEval's layout under ``root``."""
    rng = random.Random(seed)
    for folder, pos_name, neg_name, topics in (
        ("MR", "rt-polarity.pos", "rt-polarity.neg", TOPICS),
        ("CR", "custrev.pos", "custrev.neg", OBJECTS),
    ):
        pos = [_sentiment(rng, True, topics) for _ in range(n_per_class)]
        neg = [_sentiment(rng, False, topics) for _ in range(n_per_class)]
        pos[3] = "the café scene was wonderful and lovely ."  # a latin-1 byte (0xE9), as in SentEval's files
        _write_lines(root / folder / pos_name, pos, "latin-1")
        _write_lines(root / folder / neg_name, neg, "latin-1")
    # CR's real files contain empty lines; SentEval keeps them as empty sentences
    cr_pos = (root / "CR" / "custrev.pos").read_bytes()
    (root / "CR" / "custrev.pos").write_bytes(cr_pos + b"\n")
    objective = [
        f"the {rng.choice(TOPICS)} was filmed in {rng.randint(1950, 2010)} in {rng.choice(NOUNS)} ."
        for _ in range(n_per_class)
    ]
    subjective = [
        f"i honestly think the {rng.choice(TOPICS)} is {rng.choice(POSITIVE + NEGATIVE)} ." for _ in range(n_per_class)
    ]
    _write_lines(root / "SUBJ" / "subj.objective", objective, "latin-1")
    _write_lines(root / "SUBJ" / "subj.subjective", subjective, "latin-1")
    mpqa_pos = [f"{rng.choice(POSITIVE)} {rng.choice(['support', 'success', 'praise'])}" for _ in range(n_per_class)]
    mpqa_neg = [f"{rng.choice(NEGATIVE)} {rng.choice(['failure', 'decay', 'complaint'])}" for _ in range(n_per_class)]
    _write_lines(root / "MPQA" / "mpqa.pos", mpqa_pos, "latin-1")
    _write_lines(root / "MPQA" / "mpqa.neg", mpqa_neg, "latin-1")
    for split, size in (("train", 2 * n_per_class), ("dev", 40), ("test", 40)):
        lines = []
        for i in range(size):
            positive = i % 2 == 0
            lines.append(f"{_sentiment(rng, positive, TOPICS)} \t{int(positive)}")  # SST has a space before the tab
        _write_lines(root / "SST" / "binary" / f"sentiment-{split}", lines)
    for name, size in (("train_5500.label", 20), ("TREC_10.label", 10)):
        lines = []
        for coarse, (fine, templates) in TREC_TEMPLATES.items():
            for _ in range(size):
                lines.append(f"{coarse}:{fine} {rng.choice(templates).format(x=rng.choice(NOUNS))}")
        rng.shuffle(lines)
        if name == "train_5500.label":
            lines[0] = lines[0].replace("?", "in Malmö ?")  # latin-1 byte 0xF6
        _write_lines(root / "TREC" / name, lines, "latin-1")
    for name, size in (("msr_paraphrase_train.txt", n_per_class), ("msr_paraphrase_test.txt", 20)):
        lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
        for i in range(size):
            noun, topic, word, thing = rng.choice(NOUNS), rng.choice(TOPICS), rng.choice(POSITIVE), rng.choice(OBJECTS)
            a = f"{noun} said the {topic} was {word} on {thing} ."
            same = a.replace(" said ", " stated that ")
            other = f"{rng.randint(2, 99)} {thing}s were sold in {rng.choice(NOUNS)} last {i % 7 + 1} weeks ."
            lines.append(f"1\t{2 * i}\t{2 * i + 1}\t{a}\t{same}")
            lines.append(f"0\t{2 * i + 10_000}\t{2 * i + 10_001}\t{a}\t{other}")
        _write_lines(root / "MRPC" / name, lines, "utf-8", bom=True)
    return root


@pytest.fixture(scope="session")
def transfer_dir(tmp_path_factory) -> Path:
    return write_transfer_data(tmp_path_factory.mktemp("senteval_transfer"))


def write_small_stsb(root: Path, n_lines: int = 120) -> Path:
    """A SentEval data dir holding only ``STS/STSBenchmark/sts-dev.csv`` and ``sts-test.csv`` (first lines of the
    bundled files)."""
    bundled = bundled_data_dir()
    assert bundled is not None
    target = root / "STS" / "STSBenchmark"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("sts-dev.csv", "sts-test.csv"):
        lines = (bundled / "STS" / "STSBenchmark" / name).read_bytes().split(b"\n")[:n_lines]
        (target / name).write_bytes(b"\n".join(lines) + b"\n")
    return root


@pytest.fixture(scope="session")
def small_sts_dir(tmp_path_factory) -> Path:
    return write_small_stsb(tmp_path_factory.mktemp("senteval_small_sts"))


@pytest.fixture(scope="session")
def dev_only_dir(tmp_path_factory) -> Path:
    """Only the full STS-B dev file: proves that the dev evaluator needs nothing else."""
    bundled = bundled_data_dir()
    assert bundled is not None
    root = tmp_path_factory.mktemp("senteval_dev_only")
    (root / "STS" / "STSBenchmark").mkdir(parents=True)
    shutil.copy(bundled / "STS" / "STSBenchmark" / "sts-dev.csv", root / "STS" / "STSBenchmark" / "sts-dev.csv")
    return root


@pytest.fixture(scope="session")
def minilm(minilm_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_path)


@pytest.fixture(scope="session")
def nan_model_dir(tmp_path_factory, tiny_bert_dir) -> str:
    """A real (tiny) SentenceTransformer whose weights contain NaN, so every embedding is NaN."""
    from dalr_hf.student import build_student

    model = build_student(tiny_bert_dir, pooling="cls", max_seq_length=32)
    with torch.no_grad():
        model[0].auto_model.embeddings.LayerNorm.weight.fill_(float("nan"))
    path = str(tmp_path_factory.mktemp("nan_model"))
    model.save(path)
    return path
