"""Readers for SentEval's ``downstream`` data layout (STS12–16, STS-B, SICK-R and the transfer tasks).

Every reader mirrors what SentEval does with the same files (encodings, columns, header lines, sentence
normalisation: split on whitespace and re-join with single spaces) and differs from it in one way: a line that
cannot be parsed is not silently skipped or fatal. Such lines are counted per file, the first few line numbers and
reasons are kept, a :class:`MalformedDataWarning` is emitted and the counts travel with the data into the results.
A missing file raises :class:`FileNotFoundError` naming the exact path that was expected.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

ENV_DATA_DIR = "DALR_SENTEVAL_DIR"
MAX_REPORTED_LINES = 5

STS_TASKS: tuple[str, ...] = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICKRelatedness")
STS_DEV_TASK = "STSBenchmark-dev"
TRANSFER_TASKS: tuple[str, ...] = ("MR", "CR", "SUBJ", "MPQA", "SST2", "TREC", "MRPC")
ALL_STS_TASKS: tuple[str, ...] = (*STS_TASKS, STS_DEV_TASK)

DISPLAY_NAMES: dict[str, str] = {
    "STSBenchmark": "STS-B",
    "SICKRelatedness": "SICK-R",
    STS_DEV_TASK: "STS-B dev",
}

STS_YEAR_SUBSETS: dict[str, tuple[str, ...]] = {
    "STS12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    # The SMT subset of STS13 is not distributed (licensing), as in SentEval and SimCSE.
    "STS13": ("FNWN", "headlines", "OnWN"),
    "STS14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "STS15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "STS16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}

# Every accepted spelling of a task name (lower case) -> its canonical name; the one definition of task aliases.
TASK_ALIASES: dict[str, str] = {
    "sts-b": "STSBenchmark",
    "stsb": "STSBenchmark",
    "stsbenchmark": "STSBenchmark",
    "sts-b-dev": STS_DEV_TASK,
    "stsb-dev": STS_DEV_TASK,
    "stsbenchmark-dev": STS_DEV_TASK,
    "sick-r": "SICKRelatedness",
    "sickr": "SICKRelatedness",
    "sickrelatedness": "SICKRelatedness",
    "sst": "SST2",
    "sst-2": "SST2",
}
for _name in (*ALL_STS_TASKS, *TRANSFER_TASKS):
    TASK_ALIASES[_name.lower()] = _name
for _name, _display in DISPLAY_NAMES.items():
    TASK_ALIASES.setdefault(_display.lower(), _name)
_ALIASES = TASK_ALIASES
_GROUPS: dict[str, tuple[str, ...]] = {"sts": STS_TASKS, "transfer": TRANSFER_TASKS, "all": STS_TASKS + TRANSFER_TASKS}


class MalformedDataWarning(UserWarning):
    """Some lines of an evaluation file could not be parsed; they were counted and left out."""


class DataFileError(ValueError):
    """An evaluation file is unusable as a whole (e.g. sentence and gold files of different lengths)."""


def resolve_tasks(tasks: str | Sequence[str]) -> list[str]:
    """Expand ``"sts"``, ``"transfer"``, ``"all"``, comma-separated strings and aliases (``STS-B``, ``SICK-R``)
    into canonical task names, keeping order and dropping duplicates."""
    items = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    resolved: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        key = item.lower()
        names = _GROUPS.get(key) or ((_ALIASES[key],) if key in _ALIASES else None)
        if names is None:
            known = ", ".join([*_GROUPS, *ALL_STS_TASKS, *TRANSFER_TASKS])
            raise ValueError(f"unknown evaluation task {item!r}; known tasks and groups: {known}")
        for name in names:
            if name not in resolved:
                resolved.append(name)
    if not resolved:
        raise ValueError("no evaluation task selected")
    return resolved


def display_name(task: str) -> str:
    return DISPLAY_NAMES.get(task, task)


def canonical_task_name(name: str) -> str:
    """The canonical name of a task spelled any accepted way (``STS-B``, ``sickr``, ...); unknown names unchanged."""
    return TASK_ALIASES.get(name.strip().lower(), name)


# --------------------------------------------------------------------------------------------------------------
# Data directory
# --------------------------------------------------------------------------------------------------------------


def bundled_data_dir() -> Path | None:
    """The repository's ``data/senteval/downstream`` (STS12–16, STS-B dev/test, SICK-R test), if present."""
    candidate = Path(__file__).resolve().parents[2] / "data" / "senteval" / "downstream"
    return candidate if candidate.is_dir() else None


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir`` if given, else ``$DALR_SENTEVAL_DIR``, else the repository's ``data/senteval/downstream``."""
    if data_dir is not None:
        source = "data_dir argument"
        path = Path(data_dir).expanduser()
    elif os.environ.get(ENV_DATA_DIR):
        source = f"environment variable {ENV_DATA_DIR}"
        path = Path(os.environ[ENV_DATA_DIR]).expanduser()
    else:
        bundled = bundled_data_dir()
        if bundled is None:
            raise FileNotFoundError(
                "no SentEval data directory: pass --data-dir / data_dir=PATH or set "
                f"{ENV_DATA_DIR} to a SentEval 'downstream' folder (the dalr_hf repository ships the STS/SICK part "
                "under data/senteval/downstream, which this installation does not contain)"
            )
        return bundled
    if not path.is_dir():
        raise FileNotFoundError(f"SentEval data directory {str(path)!r} (from the {source}) does not exist")
    return path


# --------------------------------------------------------------------------------------------------------------
# Issue reports
# --------------------------------------------------------------------------------------------------------------


@dataclass
class FileReport:
    """What happened to the lines of one file."""

    path: str
    lines: int = 0
    malformed: int = 0
    malformed_lines: list[int] = field(default_factory=list)
    malformed_reasons: list[str] = field(default_factory=list)
    empty_gold: int = 0
    empty_sentences: int = 0
    empty_sentence_lines: list[int] = field(default_factory=list)

    def add_malformed(self, line_no: int, reason: str) -> None:
        self.malformed += 1
        if len(self.malformed_lines) < MAX_REPORTED_LINES:
            self.malformed_lines.append(line_no)
            self.malformed_reasons.append(reason)

    def add_empty_sentence(self, line_no: int) -> None:
        self.empty_sentences += 1
        if len(self.empty_sentence_lines) < MAX_REPORTED_LINES:
            self.empty_sentence_lines.append(line_no)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "lines": self.lines,
            "malformed": self.malformed,
            "malformed_lines": list(self.malformed_lines),
            "malformed_reasons": list(self.malformed_reasons),
            "empty_gold_dropped": self.empty_gold,
            "empty_sentences_kept": self.empty_sentences,
            "empty_sentence_lines": list(self.empty_sentence_lines),
        }


@dataclass
class DataReport:
    """Per-task collection of :class:`FileReport` objects."""

    task: str
    files: list[FileReport] = field(default_factory=list)

    @property
    def malformed(self) -> int:
        return sum(f.malformed for f in self.files)

    @property
    def empty_gold(self) -> int:
        return sum(f.empty_gold for f in self.files)

    @property
    def empty_sentences(self) -> int:
        return sum(f.empty_sentences for f in self.files)

    def to_dict(self) -> dict:
        return {
            "malformed_lines": self.malformed,
            "empty_gold_dropped": self.empty_gold,
            "empty_sentences_kept": self.empty_sentences,
            "files": [f.to_dict() for f in self.files],
        }

    def warn(self) -> None:
        """Emit one warning per problem kind (never silent)."""
        if self.malformed:
            details = "; ".join(
                f"{Path(f.path).name}: {f.malformed} (lines {', '.join(map(str, f.malformed_lines))}"
                f"{', ...' if f.malformed > len(f.malformed_lines) else ''}: {f.malformed_reasons[0]})"
                for f in self.files
                if f.malformed
            )
            message = (
                f"{self.task}: {self.malformed} malformed line(s) could not be parsed and were left out — {details}"
            )
            logger.warning(message)
            warnings.warn(message, MalformedDataWarning, stacklevel=3)
        if self.empty_sentences:
            details = "; ".join(
                f"{Path(f.path).name}: lines {', '.join(map(str, f.empty_sentence_lines))}"
                for f in self.files
                if f.empty_sentences
            )
            message = (
                f"{self.task}: {self.empty_sentences} empty sentence(s) kept as empty strings, as SentEval does — "
                f"{details}"
            )
            logger.warning(message)
            warnings.warn(message, MalformedDataWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------------------------
# Low-level reading
# --------------------------------------------------------------------------------------------------------------


def _require(path: Path, task: str, data_dir: Path) -> Path:
    if not path.is_file():
        folder = path.parent
        hint = "" if folder.is_dir() else f" (folder {folder.relative_to(data_dir)!s} is missing)"
        raise FileNotFoundError(f"{task}: expected file {path}{hint}; data directory: {data_dir}")
    return path


def _read_lines(path: Path, encoding: str, report: FileReport) -> list[tuple[int, str | None, str]]:
    """``(line number, text, decode error)`` for every line of ``path``, split on ``\\n`` only.

    A UTF-8 byte-order mark is removed; a trailing ``\\r`` (CRLF files) is removed; the final newline does not
    produce an extra empty line. ``text`` is ``None`` when the line is not valid in ``encoding``; callers report
    such lines as malformed in line order.
    """
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    lines: list[tuple[int, str | None, str]] = []
    for number, chunk in enumerate(chunks, start=1):
        if chunk.endswith(b"\r"):
            chunk = chunk[:-1]
        try:
            lines.append((number, chunk.decode(encoding), ""))
        except UnicodeDecodeError as exc:
            lines.append((number, None, f"not valid {encoding} ({exc.reason} at byte {exc.start})"))
    report.lines = len(lines)
    return lines


def _decoded(path: Path, encoding: str, report: FileReport) -> Iterator[tuple[int, str]]:
    """The decodable lines of ``path``; undecodable ones are reported as malformed, in line order."""
    for number, text, error in _read_lines(path, encoding, report):
        if text is None:
            report.add_malformed(number, error)
        else:
            yield number, text


def normalize_sentence(text: str) -> str:
    """SentEval's batcher view of a sentence: whitespace tokens re-joined with single spaces."""
    return " ".join(text.split())


def _parse_score(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------------------------------------------
# STS
# --------------------------------------------------------------------------------------------------------------


@dataclass
class STSData:
    """Sentence pairs of one STS task, grouped in subsets (the yearly files, or the single split)."""

    task: str
    split: str
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    subsets: list[tuple[str, int, int]]
    report: DataReport

    @property
    def n_pairs(self) -> int:
        return len(self.sentences1)

    def sentences(self) -> list[str]:
        return [*self.sentences1, *self.sentences2]


def _check_sentences(a: str, b: str, number: int, report: FileReport) -> tuple[str, str]:
    a, b = normalize_sentence(a), normalize_sentence(b)
    if not a or not b:
        report.add_empty_sentence(number)
    return a, b


def _load_sts_year(task: str, data_dir: Path) -> STSData:
    folder = data_dir / "STS" / f"{task}-en-test"
    data = STSData(task, "test", [], [], np.empty(0), [], DataReport(task))
    scores: list[float] = []
    for subset in STS_YEAR_SUBSETS[task]:
        input_path = _require(folder / f"STS.input.{subset}.txt", task, data_dir)
        gold_path = _require(folder / f"STS.gs.{subset}.txt", task, data_dir)
        input_report, gold_report = FileReport(str(input_path)), FileReport(str(gold_path))
        data.report.files += [input_report, gold_report]
        input_lines = _read_lines(input_path, "utf-8", input_report)
        gold_lines = _read_lines(gold_path, "utf-8", gold_report)
        if len(input_lines) != len(gold_lines):
            raise DataFileError(
                f"{task}: {input_path} has {len(input_lines)} lines but {gold_path} has {len(gold_lines)}; "
                "sentence pairs and gold scores cannot be aligned"
            )
        start = len(data.sentences1)
        for (number, line, line_error), (_, gold, gold_error) in zip(input_lines, gold_lines):
            if gold is None:
                gold_report.add_malformed(number, gold_error)
                continue
            gold = gold.strip()
            if gold == "":
                gold_report.empty_gold += 1  # unannotated pair: dropped by the protocol
                continue
            score = _parse_score(gold)
            if score is None:
                gold_report.add_malformed(number, f"gold score {gold[:30]!r} is not a finite number")
                continue
            if line is None:
                input_report.add_malformed(number, line_error)
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                input_report.add_malformed(number, f"expected 2 tab-separated sentences, found {len(fields)} field(s)")
                continue
            a, b = _check_sentences(fields[0], fields[1], number, input_report)
            data.sentences1.append(a)
            data.sentences2.append(b)
            scores.append(score)
        data.subsets.append((subset, start, len(data.sentences1)))
    data.scores = np.asarray(scores, dtype=np.float64)
    return data


def _load_table(
    task: str,
    split: str,
    path: Path,
    columns: tuple[int, int, int],
    skip_header: bool,
) -> STSData:
    """Tab-separated pair files: STS Benchmark (score, s1, s2 in columns 4, 5, 6) and SICK (1, 2, 3 with header)."""
    report = FileReport(str(path))
    data = STSData(task, split, [], [], np.empty(0), [], DataReport(task, [report]))
    col_a, col_b, col_score = columns
    needed = max(columns) + 1
    scores: list[float] = []
    for number, line in _decoded(path, "utf-8", report):
        if skip_header and number == 1:
            continue
        fields = line.strip().split("\t")
        if len(fields) < needed:
            report.add_malformed(number, f"expected at least {needed} tab-separated fields, found {len(fields)}")
            continue
        score = _parse_score(fields[col_score].strip())
        if score is None:
            report.add_malformed(number, f"score {fields[col_score][:30]!r} is not a finite number")
            continue
        a, b = _check_sentences(fields[col_a], fields[col_b], number, report)
        data.sentences1.append(a)
        data.sentences2.append(b)
        scores.append(score)
    data.scores = np.asarray(scores, dtype=np.float64)
    data.subsets = [(split, 0, len(scores))]
    return data


def load_sts_task(task: str, data_dir: str | os.PathLike[str] | None = None, warn: bool = True) -> STSData:
    """Load one STS task (``STS12``…``STS16``, ``STSBenchmark`` (test), ``STSBenchmark-dev``, ``SICKRelatedness``)."""
    root = resolve_data_dir(data_dir)
    task = resolve_tasks([task])[0]
    if task in STS_YEAR_SUBSETS:
        data = _load_sts_year(task, root)
    elif task in ("STSBenchmark", STS_DEV_TASK):
        split = "dev" if task == STS_DEV_TASK else "test"
        path = _require(root / "STS" / "STSBenchmark" / f"sts-{split}.csv", task, root)
        data = _load_table(task, split, path, (5, 6, 4), skip_header=False)
    elif task == "SICKRelatedness":
        path = _require(root / "SICK" / "SICK_test_annotated.txt", task, root)
        data = _load_table(task, "test", path, (1, 2, 3), skip_header=True)
    else:
        raise ValueError(f"{task} is not an STS task")
    if data.n_pairs == 0:
        raise DataFileError(f"{task}: no usable sentence pair in {[f.path for f in data.report.files]}")
    if warn:
        data.report.warn()
    return data


# --------------------------------------------------------------------------------------------------------------
# Transfer tasks
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ClassificationSplit:
    """Single sentences (``sentences2`` is ``None``) or sentence pairs (MRPC) with integer labels."""

    sentences1: list[str]
    labels: np.ndarray
    sentences2: list[str] | None = None

    def __len__(self) -> int:
        return len(self.sentences1)

    def sentences(self) -> list[str]:
        return [*self.sentences1, *(self.sentences2 or [])]


@dataclass
class TransferData:
    task: str
    n_classes: int
    splits: dict[str, ClassificationSplit]
    report: DataReport

    def sentences(self) -> list[str]:
        return [s for split in self.splits.values() for s in split.sentences()]


_BINARY_FILES: dict[str, tuple[str, str, str]] = {
    # task: (folder, file of label 1, file of label 0) -- SUBJ labels objective as 1, as SentEval does
    "MR": ("MR", "rt-polarity.pos", "rt-polarity.neg"),
    "CR": ("CR", "custrev.pos", "custrev.neg"),
    "SUBJ": ("SUBJ", "subj.objective", "subj.subjective"),
    "MPQA": ("MPQA", "mpqa.pos", "mpqa.neg"),
}
TREC_CLASSES: tuple[str, ...] = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


def _sorted_split(items: Sequence[tuple[Any, ...]], key_len: int) -> ClassificationSplit:
    """Order examples as SentEval does before embedding them (by word counts, then label; stable).

    The order matters: cross-validation folds and minibatches are drawn over this order.
    """
    ordered = sorted(items, key=lambda z: (*(len(z[i]) for i in range(key_len)), z[-1]))
    first = [" ".join(z[0]) for z in ordered]
    second = [" ".join(z[1]) for z in ordered] if key_len == 2 else None
    return ClassificationSplit(first, np.asarray([z[-1] for z in ordered], dtype=np.int64), second)


def _load_binary(task: str, root: Path) -> TransferData:
    folder, first, second = _BINARY_FILES[task]
    report = DataReport(task)
    items: list[tuple[list[str], int]] = []
    for name, label in ((first, 1), (second, 0)):
        path = _require(root / folder / name, task, root)
        file_report = FileReport(str(path))
        report.files.append(file_report)
        for number, line in _decoded(path, "latin-1", file_report):
            words = line.split()
            if not words:
                file_report.add_empty_sentence(number)
            items.append((words, label))
    return TransferData(task, 2, {"all": _sorted_split(items, 1)}, report)


def _load_labelled_sentences(
    task: str,
    root: Path,
    folder: Path,
    files: Sequence[tuple[str, str]],
    encoding: str,
    parse: Callable[[str], tuple[str, int] | None],
    expected: str,
) -> tuple[dict[str, ClassificationSplit], DataReport]:
    """The splits of a one-sentence task whose files hold one labelled example a line, and the task's data report:
    ``files`` pairs each split with its file in ``folder`` (below the data folder ``root``); ``parse`` gives a line's
    (sentence, label), or None where the line is not what ``expected`` describes."""
    report = DataReport(task)
    splits: dict[str, ClassificationSplit] = {}
    for split, name in files:
        path = _require(folder / name, task, root)
        file_report = FileReport(str(path))
        report.files.append(file_report)
        items: list[tuple[list[str], int]] = []
        for number, line in _decoded(path, encoding, file_report):
            parsed = parse(line)
            if parsed is None:
                file_report.add_malformed(number, expected)
                continue
            words = parsed[0].split()
            if not words:
                file_report.add_empty_sentence(number)
            items.append((words, parsed[1]))
        splits[split] = _sorted_split(items, 1)
    return splits, report


def _parse_sst2(line: str) -> tuple[str, int] | None:
    fields = line.strip().split("\t")
    if len(fields) != 2 or fields[1].strip() not in ("0", "1"):
        return None
    return fields[0], int(fields[1])


def _parse_trec(line: str) -> tuple[str, int] | None:
    coarse, sep, rest = line.strip().partition(":")
    fine_and_question = rest.split(" ", 1)
    if not sep or coarse not in TREC_CLASSES or len(fine_and_question) != 2:
        return None
    return fine_and_question[1], TREC_CLASSES.index(coarse)


def _load_sst2(root: Path) -> TransferData:
    files = (("train", "sentiment-train"), ("dev", "sentiment-dev"), ("test", "sentiment-test"))
    splits, report = _load_labelled_sentences(
        "SST2", root, root / "SST" / "binary", files, "utf-8", _parse_sst2, "expected '<sentence>\\t<0 or 1>'"
    )
    return TransferData("SST2", 2, splits, report)


def _load_trec(root: Path) -> TransferData:
    files = (("train", "train_5500.label"), ("test", "TREC_10.label"))
    splits, report = _load_labelled_sentences(
        "TREC",
        root,
        root / "TREC",
        files,
        "latin-1",
        _parse_trec,
        "expected '<COARSE>:<fine> <question>' with a known coarse label",
    )
    return TransferData("TREC", len(TREC_CLASSES), splits, report)


def _load_mrpc(root: Path) -> TransferData:
    report = DataReport("MRPC")
    splits: dict[str, ClassificationSplit] = {}
    for split, name in (("train", "msr_paraphrase_train.txt"), ("test", "msr_paraphrase_test.txt")):
        path = _require(root / "MRPC" / name, "MRPC", root)
        file_report = FileReport(str(path))
        report.files.append(file_report)
        items: list[tuple[list[str], list[str], int]] = []
        for number, line in _decoded(path, "utf-8", file_report):
            fields = line.strip().split("\t")
            if number == 1 and fields and fields[0].strip() == "Quality":
                continue  # header
            if len(fields) < 5 or fields[0].strip() not in ("0", "1"):
                file_report.add_malformed(number, "expected 'label\\tid1\\tid2\\tsentence1\\tsentence2' (label 0/1)")
                continue
            a, b = fields[3].split(), fields[4].split()
            if not a or not b:
                file_report.add_empty_sentence(number)
            items.append((a, b, int(fields[0])))
        splits[split] = _sorted_split(items, 2)
    return TransferData("MRPC", 2, splits, report)


def load_transfer_task(task: str, data_dir: str | os.PathLike[str] | None = None, warn: bool = True) -> TransferData:
    """Load one transfer task in SentEval's layout (``MR/``, ``CR/``, ``SUBJ/``, ``MPQA/``, ``SST/binary/``,
    ``TREC/``, ``MRPC/``)."""
    root = resolve_data_dir(data_dir)
    task = resolve_tasks([task])[0]
    if task in _BINARY_FILES:
        data = _load_binary(task, root)
    elif task == "SST2":
        data = _load_sst2(root)
    elif task == "TREC":
        data = _load_trec(root)
    elif task == "MRPC":
        data = _load_mrpc(root)
    else:
        raise ValueError(f"{task} is not a transfer task")
    for split_name, split in data.splits.items():
        if len(split) == 0:
            raise DataFileError(f"{task}: the {split_name} split has no usable example")
    if warn:
        data.report.warn()
    return data
