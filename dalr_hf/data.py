"""Corpora, the two-source batch schedule of docs/method.md#two-source-schedule, and the collator.

* Text-only corpus: one sentence per line (a ``.txt`` file) or a ``datasets`` dataset with a ``text`` column.
* Image-caption pairs: a ``datasets`` dataset (usually a feature store written by :mod:`dalr_hf.features`) with the
  columns ``image_id``, ``caption``, ``image_features`` and optionally ``caption_features`` and cached teacher
  embeddings ``teacher_emb_<k>``. Both stay memory-mapped Arrow: rows are read per batch.
* The schedule interleaves one paired batch every ``k = floor(n_t / n_p)`` steps, exactly as the reference, when
  that uses both sources; otherwise it spreads the ``n_t`` text and ``n_p`` paired batches evenly (see
  :class:`TwoSourceSchedule`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sentence_transformers.base.sampler import MultiDatasetDefaultBatchSampler
from torch.utils.data import Dataset as TorchDataset

logger = logging.getLogger(__name__)

TEXT_COLUMN = "text"
PAIRED_REQUIRED_COLUMNS = ("image_id", "caption", "image_features")
TEACHER_COLUMN_RE = re.compile(r"^teacher_emb_(\d+)$")
# Cached mixed teacher token states (B, max_length - 1, H) and each row's valid-token count (dalr_hf.features).
TEACHER_TOKEN_COLUMNS = ("teacher_tokens", "teacher_token_len")


# ---------------------------------------------------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------------------------------------------------
def load_text_corpus(source, column: str = TEXT_COLUMN):
    """Load a text-only corpus as a memory-mapped ``datasets.Dataset`` with one column ``text``.

    ``source`` is a ``.txt`` file (one sentence per line), a folder written by ``Dataset.save_to_disk`` or a
    ``datasets.Dataset``. Empty and whitespace-only sentences are removed and the count is logged with the first line
    numbers, so nothing disappears silently.
    """
    import datasets

    name = source if isinstance(source, str) else type(source).__name__
    if isinstance(source, str):
        if not os.path.exists(source):
            raise FileNotFoundError(
                f"text corpus {source!r} does not exist (expected a .txt file with one sentence "
                "per line, or a folder saved with datasets' save_to_disk)"
            )
        if os.path.isdir(source):
            ds = datasets.load_from_disk(source)
        else:
            from dalr_hf.recipe_config import check_text_file

            check_text_file(source, "text corpus")  # UTF-8 (else file, line, byte) and not empty, in our own words
            ds = datasets.load_dataset("text", data_files=source, split="train", keep_linebreaks=False)
    elif isinstance(source, datasets.Dataset):
        ds = source
    else:
        raise TypeError(f"text corpus must be a path or a datasets.Dataset, got {type(source).__name__}")
    if column not in ds.column_names:
        raise ValueError(f"text corpus {name!r}: column `{column}` missing; found columns {ds.column_names}")
    if column != TEXT_COLUMN:
        ds = ds.rename_column(column, TEXT_COLUMN)
    ds = ds.select_columns([TEXT_COLUMN])
    if len(ds) == 0:
        raise ValueError(f"text corpus {name!r} has no sentences")

    def _blank(batch):
        return [t is None or not t.strip() for t in batch[TEXT_COLUMN]]

    blank_rows = [
        i
        for i, b in enumerate(
            ds.map(lambda b: {"_blank": _blank(b)}, batched=True, batch_size=10_000, remove_columns=ds.column_names)[
                "_blank"
            ]
        )
        if b
    ]
    if blank_rows:
        logger.warning(
            "text corpus %s: removed %d empty or whitespace-only line(s) of %d (first line numbers, 1-based: %s)",
            name,
            len(blank_rows),
            len(ds),
            [i + 1 for i in blank_rows[:10]],
        )
        keep = np.setdiff1d(np.arange(len(ds)), np.asarray(blank_rows))
        ds = ds.select(keep)
        if len(ds) == 0:
            raise ValueError(f"text corpus {name!r} holds only empty lines")
    return ds


def load_paired_dataset(
    source, image_feature_dim: int | None = None, require_caption_features: bool = False, check_rows: bool = True
):
    """Load and validate image-caption pairs with their frozen image features.

    Raises ``ValueError`` naming the source and the column, row or value at fault: a missing column, an image
    feature width other than ``image_feature_dim``, NaN/Inf or empty feature rows, empty captions.
    """
    import datasets

    name = source if isinstance(source, str) else "paired dataset"
    if isinstance(source, str):
        if not os.path.exists(source):
            raise FileNotFoundError(f"paired dataset {source!r} does not exist (expected a feature-store folder)")
        metadata_file = os.path.join(source, "dalr_features.json")
        if os.path.isfile(metadata_file):
            from dalr_hf.features import load_feature_store

            ds, metadata = load_feature_store(source)
            if metadata.get("stand_in"):
                logger.warning(
                    "paired dataset %s holds STAND-IN image features (%s), not features of real images",
                    source,
                    metadata.get("stand_in_description", "see its metadata"),
                )
        else:
            ds = datasets.load_from_disk(source)
    elif isinstance(source, datasets.Dataset):
        ds = source
    else:
        raise TypeError(f"paired dataset must be a path or a datasets.Dataset, got {type(source).__name__}")

    required = list(PAIRED_REQUIRED_COLUMNS) + (["caption_features"] if require_caption_features else [])
    for column in required:
        if column not in ds.column_names:
            raise ValueError(
                f"{name}: column `{column}` missing; found {ds.column_names}, expected at least {required}"
            )
    if len(ds) == 0:
        raise ValueError(f"{name} has no rows")
    if check_rows:
        _validate_paired_rows(ds, name, image_feature_dim)
    return ds


def _validate_paired_rows(ds, name: str, image_feature_dim: int | None) -> None:
    feature_columns = [c for c in ("image_features", "caption_features") if c in ds.column_names]
    dims: dict[str, int] = {}
    problems: list[str] = []
    view = ds.select_columns(["image_id", "caption", *feature_columns]).with_format("numpy")
    chunk = 8192
    for start in range(0, len(ds), chunk):
        batch = view[start : start + chunk]
        for offset, caption in enumerate(batch["caption"]):
            if caption is None or not str(caption).strip():
                problems.append(f"row {start + offset} (image_id {str(batch['image_id'][offset])!r}): empty caption")
        for column in feature_columns:
            values = batch[column]
            if values.dtype == object:  # ragged rows: find the odd ones out
                lengths = np.array([len(v) for v in values])
            else:
                lengths = np.full(len(values), values.shape[1] if values.ndim == 2 else 0)
            dims.setdefault(column, int(lengths[0]))
            for offset in np.nonzero(lengths != dims[column])[0][:5]:
                problems.append(
                    f"row {start + offset} (image_id {str(batch['image_id'][offset])!r}): `{column}` has "
                    f"{lengths[offset]} values, expected {dims[column]}"
                )
            if values.dtype != object:
                bad = ~np.isfinite(values).all(axis=1) if values.ndim == 2 else np.ones(len(values), bool)
                for offset in np.nonzero(bad)[0][:5]:
                    problems.append(
                        f"row {start + offset} (image_id {str(batch['image_id'][offset])!r}): `{column}` "
                        "holds NaN/Inf or is empty"
                    )
        if len(problems) >= 20:
            break
    if problems:
        raise ValueError(f"{name}: {len(problems)}+ bad row(s):\n  " + "\n  ".join(problems[:20]))
    if dims.get("image_features", 0) == 0:
        raise ValueError(f"{name}: `image_features` rows are empty")
    if image_feature_dim is not None and dims["image_features"] != image_feature_dim:
        raise ValueError(
            f"{name}: image feature dim {dims['image_features']} does not match the configured "
            f"{image_feature_dim} (image_feature_dim)"
        )


def paired_feature_dim(ds, column: str = "image_features") -> int:
    return len(ds[0][column])


def cached_teacher_columns(ds) -> list[str]:
    """Cached teacher embedding columns ``teacher_emb_0..k`` of a paired dataset, in teacher order."""
    if ds is None:
        return []
    found = sorted((int(m.group(1)), c) for c in ds.column_names if (m := TEACHER_COLUMN_RE.match(c)))
    if [i for i, _ in found] != list(range(len(found))):
        raise ValueError(
            f"cached teacher columns must be teacher_emb_0..teacher_emb_<k-1>; found {[c for _, c in found]}"
        )
    return [c for _, c in found]


# ---------------------------------------------------------------------------------------------------------------------
# The two-source schedule (docs/method.md#two-source-schedule)
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class TwoSourceSchedule:
    """Which step of an epoch is paired, and which rows each batch holds.

    ``n_t = ceil(N_text / B)``, ``n_p = ceil(N_pair / B_p)``; an epoch is ``n_t + n_p`` steps. The two sources are
    interleaved by one of two rules (``interleave`` in :meth:`summary`):

    * ``"k_rule"`` (the reference's): ``k = floor(n_t / n_p)``, step ``s`` (counted from 0, reset each epoch) is paired
      when ``s % k == 0``. Used when ``k >= 2``, where it keeps each source within a factor of two of its share (e.g.
      Flickr at B=128: n_t 7,813, n_p 1,164, k 6: 1,497 paired and 7,480 text steps per epoch).
    * ``"even"``: exactly ``n_p`` paired and ``n_t`` text steps per epoch, spread evenly (step ``s`` is paired when
      ``ceil((s + 1) n_p / (n_t + n_p)) > ceil(s n_p / (n_t + n_p))``). Used when ``k < 2``: there the k-rule would
      make every step paired (``k = 1``) and never read the text corpus, or divide by zero (``k = 0``).

    Each source is an endless stream of reshuffled passes, independent of the epoch counter; the batch at any position
    is a pure function of ``(seed, source, position)``, so an epoch can be regenerated (and a run resumed) exactly.
    """

    num_text: int
    num_paired: int
    batch_size: int
    paired_batch_size: int | None = None
    seed: int = 1
    drop_last_paired: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.paired_batch_size is None:
            self.paired_batch_size = self.batch_size
        if self.paired_batch_size < 1:
            raise ValueError(f"paired_batch_size must be >= 1, got {self.paired_batch_size}")
        if self.num_text < 0 or self.num_paired < 0 or self.num_text + self.num_paired == 0:
            raise ValueError(f"need at least one sentence or pair; got {self.num_text} and {self.num_paired}")
        self.n_t = math.ceil(self.num_text / self.batch_size)
        if self.drop_last_paired:
            self.n_p = self.num_paired // self.paired_batch_size
            if self.num_paired and self.n_p == 0:
                raise ValueError(
                    f"drop_last_paired with {self.num_paired} pairs < paired batch size "
                    f"{self.paired_batch_size} leaves no paired batch"
                )
        else:
            self.n_p = math.ceil(self.num_paired / self.paired_batch_size)
        self.steps_per_epoch = self.n_t + self.n_p
        # k is the reference rule's interleaving period (informational when the even rule is used).
        self.k = (self.n_t // self.n_p) if self.n_p else 0
        if self.n_p == 0:
            self.interleave = "text_only"
            paired = np.zeros(self.steps_per_epoch, dtype=bool)
        elif self.n_t == 0:
            self.interleave = "paired_only"
            paired = np.ones(self.steps_per_epoch, dtype=bool)
        elif self.k >= 2:
            self.interleave = "k_rule"
            paired = np.arange(self.steps_per_epoch) % self.k == 0
        else:
            self.interleave = "even"
            s = np.arange(self.steps_per_epoch, dtype=np.int64)
            total = self.steps_per_epoch
            # ceil(a / b) for non-negative integers, exact in integer arithmetic
            paired = -((-(s + 1) * self.n_p) // total) > -((-s * self.n_p) // total)
            logger.info(
                "two-source schedule: the reference's k = floor(n_t / n_p) = %d would %s; interleaving %d text and "
                "%d paired batches evenly instead",
                self.k,
                "make every step paired and never read the text corpus" if self.k == 1 else "divide by zero",
                self.n_t,
                self.n_p,
            )
        self._paired = paired
        self.paired_steps_per_epoch = int(paired.sum())
        self.text_steps_per_epoch = self.steps_per_epoch - self.paired_steps_per_epoch
        self._perm_cache: dict[tuple[str, int], np.ndarray] = {}

    # -- per-step kinds ---------------------------------------------------------------------------------------------
    def is_paired(self, step_in_epoch: int) -> bool:
        return bool(self._paired[step_in_epoch])

    def kinds(self) -> list[str]:
        return ["paired" if p else "text" for p in self._paired]

    def summary(self) -> dict:
        paired, text = self.paired_steps_per_epoch, self.text_steps_per_epoch
        return {
            "num_text": self.num_text,
            "num_paired": self.num_paired,
            "batch_size": self.batch_size,
            "paired_batch_size": self.paired_batch_size,
            "n_t": self.n_t,
            "n_p": self.n_p,
            "k": self.k,
            "interleave": self.interleave,
            "steps_per_epoch": self.steps_per_epoch,
            "paired_steps_per_epoch": paired,
            "text_steps_per_epoch": text,
            "paired_to_text_ratio": (paired / text) if text else float("inf"),
            "passes_over_pairs_per_epoch": (paired / self.n_p) if self.n_p else 0.0,
            "passes_over_text_per_epoch": (text / self.n_t) if self.n_t else 0.0,
        }

    # -- rows -------------------------------------------------------------------------------------------------------
    def _permutation(self, source: str, pass_index: int) -> np.ndarray:
        key = (source, pass_index)
        perm = self._perm_cache.get(key)
        if perm is None:
            n = self.num_text if source == "text" else self.num_paired
            salt = 0 if source == "text" else 1
            rng = np.random.Generator(np.random.PCG64([self.seed, salt, pass_index]))
            perm = rng.permutation(n)
            # keep at most the current and next pass of each source in memory
            self._perm_cache = {k: v for k, v in self._perm_cache.items() if k[0] != source or k[1] >= pass_index - 1}
            self._perm_cache[key] = perm
        return perm

    def _batch(self, source: str, position: int) -> list[int]:
        if source == "text":
            per_pass, size, n = self.n_t, self.batch_size, self.num_text
        else:
            per_pass, size, n = self.n_p, self.paired_batch_size, self.num_paired
        pass_index, within = divmod(position, per_pass)
        perm = self._permutation(source, pass_index)
        return perm[within * size : min((within + 1) * size, n)].tolist()

    def epoch(self, epoch: int) -> list[tuple[str, list[int]]]:
        """Every batch of epoch ``epoch`` as ``(kind, row indices into that source)``."""
        text_pos = epoch * self.text_steps_per_epoch
        paired_pos = epoch * self.paired_steps_per_epoch
        batches = []
        for s in range(self.steps_per_epoch):
            if self.is_paired(s):
                batches.append(("paired", self._batch("paired", paired_pos)))
                paired_pos += 1
            else:
                batches.append(("text", self._batch("text", text_pos)))
                text_pos += 1
        return batches


class TwoSourceDataset(TorchDataset):
    """Map-style view over the two sources: index ``i < N_text`` is a sentence, the rest are pairs.

    ``__getitems__`` fetches a whole batch with one Arrow read, which the DataLoader uses when present.
    """

    def __init__(self, text_dataset=None, paired_dataset=None) -> None:
        self.text = text_dataset
        self.paired = paired_dataset
        self.num_text = len(text_dataset) if text_dataset is not None else 0
        self.num_paired = len(paired_dataset) if paired_dataset is not None else 0
        self.paired_columns = []
        if paired_dataset is not None:
            optional = ["caption_features", *cached_teacher_columns(paired_dataset), *TEACHER_TOKEN_COLUMNS]
            self.paired_columns = [*PAIRED_REQUIRED_COLUMNS, *[c for c in optional if c in paired_dataset.column_names]]
            self._paired_view = paired_dataset.select_columns(self.paired_columns).with_format("numpy")

    def __len__(self) -> int:
        return self.num_text + self.num_paired

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])

    def __getitems__(self, indices: Sequence[int]) -> dict:
        indices = list(indices)
        if all(i < self.num_text for i in indices):
            return {"kind": "text", TEXT_COLUMN: self.text[indices][TEXT_COLUMN]}
        if all(i >= self.num_text for i in indices):
            rows = self._paired_view[[i - self.num_text for i in indices]]
            return {"kind": "paired", **rows}
        raise ValueError("a batch mixes text-only and paired rows; the two-source sampler never does this")


class TwoSourceBatchSampler(MultiDatasetDefaultBatchSampler):
    """The two-source schedule as a sentence-transformers multi-dataset batch sampler.

    Over a :class:`TwoSourceDataset` (the ``text`` and ``paired`` datasets of the trainer's ``DatasetDict``,
    concatenated), it yields this process's row indices for each batch of the epoch. The schedule replaces
    per-dataset batch samplers: its batches are global batches, every process walks the same schedule (so all take
    paired and text-only steps together) and takes its contiguous share of each batch. A final partial batch smaller
    than ``num_replicas`` is topped up with the first rows of its pass (logged), so that no process ever gets an empty
    batch. ``set_epoch`` is called by the Trainer at every epoch; the batches of an epoch depend only on
    ``(schedule, epoch)``, which is what makes a resumed run take the same batches.
    """

    def __init__(self, dataset, schedule: TwoSourceSchedule, num_replicas: int = 1, rank: int = 0) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        if dataset is not None and (dataset.num_text, dataset.num_paired) != (schedule.num_text, schedule.num_paired):
            raise ValueError(
                f"the schedule is for {schedule.num_text} sentences and {schedule.num_paired} pairs, the dataset holds "
                f"{dataset.num_text} and {dataset.num_paired}"
            )
        # The parent's constructor expects one batch sampler per dataset; the schedule replaces them.
        self.dataset = dataset
        self.batch_samplers = []
        self.batch_size = schedule.batch_size
        self.drop_last = False
        self.generator = None
        self.seed = schedule.seed
        self.schedule = schedule
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.topped_up = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.schedule.steps_per_epoch

    def __iter__(self):
        offset = self.schedule.num_text
        for kind, rows in self.schedule.epoch(self.epoch):
            if self.num_replicas > 1:
                if len(rows) < self.num_replicas:
                    missing = self.num_replicas - len(rows)
                    rows = rows + (rows * self.num_replicas)[:missing]
                    self.topped_up += missing
                    logger.warning(
                        "a %s batch of %d row(s) is smaller than the %d processes: repeated %d row(s)",
                        kind,
                        len(rows) - missing,
                        self.num_replicas,
                        missing,
                    )
                rows = np.array_split(np.asarray(rows), self.num_replicas)[self.rank].tolist()
            yield rows if kind == "text" else [offset + r for r in rows]


class TwoSourceDataLoader(torch.utils.data.DataLoader):
    """A DataLoader whose ``set_epoch`` reaches the two-source batch sampler (the Trainer calls it every epoch)."""

    def set_epoch(self, epoch: int) -> None:
        self.batch_sampler.set_epoch(epoch)


# ---------------------------------------------------------------------------------------------------------------------
# Collation
# ---------------------------------------------------------------------------------------------------------------------
def image_id_hash(image_id) -> int:
    """A 63-bit integer for an image id: equal ids give equal integers on every process (used for same-image masks)."""
    digest = hashlib.blake2b(str(image_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFFFFFFFFFF


class DALRDataCollator:
    """Tokenizes the sentences of a batch with the student's tokenizer and passes feature columns as tensors.

    The output holds one view (``input_ids``, ``attention_mask``[, ``token_type_ids``]); the loss duplicates it into
    the two dropout views. Paired batches also carry ``image_features``, integer ``image_ids`` (equal ids = same
    image), optional ``caption_features`` and cached ``teacher_emb_<k>``; ``sentences`` keeps the raw text for online
    teachers. Sentences longer than ``max_seq_length`` tokens are truncated (the method's ``max_seq_length=32``).

    Truncation is counted in the batch itself (``num_truncated`` and ``num_sentences``, 0-d tensors) from the one
    tokenization, and summed by the trainer: the collator keeps no state, so the counts are right with any number of
    DataLoader workers.
    """

    COUNT_KEYS = ("num_truncated", "num_sentences")

    def __init__(self, tokenizer, max_seq_length: int = 32) -> None:
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length

    def count_truncated(self, sentences: list[str], encoded) -> int:
        encodings = getattr(encoded, "encodings", None)
        if encodings is not None:  # fast tokenizer: the cut-off tokens are kept as "overflowing"
            return sum(1 for e in encodings if e.overflowing)
        lengths = self.tokenizer(sentences, add_special_tokens=True, truncation=False, return_length=True)["length"]
        return sum(1 for n in lengths if n > self.max_seq_length)

    def __call__(self, batch: dict) -> dict:
        kind = batch["kind"]
        sentences = list(batch[TEXT_COLUMN] if kind == "text" else batch["caption"])
        sentences = [str(s) for s in sentences]
        encoded = self.tokenizer(
            sentences, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )
        out = {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded}
        out["sentences"] = sentences
        out["paired"] = torch.tensor(kind == "paired")
        out["num_truncated"] = torch.tensor(self.count_truncated(sentences, encoded), dtype=torch.int64)
        out["num_sentences"] = torch.tensor(len(sentences), dtype=torch.int64)
        if kind == "paired":
            out["image_features"] = torch.as_tensor(np.asarray(batch["image_features"], dtype=np.float32))
            out["image_ids"] = torch.tensor([image_id_hash(i) for i in batch["image_id"]], dtype=torch.int64)
            for column, values in batch.items():
                if column == "caption_features" or TEACHER_COLUMN_RE.match(column):
                    out[column] = torch.as_tensor(np.asarray(values, dtype=np.float32))
            if TEACHER_TOKEN_COLUMNS[0] in batch:
                out.update(cached_token_states(batch[TEACHER_TOKEN_COLUMNS[0]], batch[TEACHER_TOKEN_COLUMNS[1]]))
        return out


def cached_token_states(states, counts) -> dict:
    """Cached token states as online teachers give them: sliced to the batch's own padded length.

    Rows are stored for every position up to the teachers' max length; online, a batch is padded to its longest
    sentence, and the reference g2l normalisation runs over the padded positions too. Slicing to the longest row's
    valid count reproduces that padding exactly.
    """
    counts = np.asarray(counts, dtype=np.int64).reshape(-1)
    length = int(counts.max())
    states = np.asarray(states)
    if states.ndim != 3 or states.shape[0] != counts.shape[0] or length > states.shape[1]:
        raise ValueError(
            f"cached token states have shape {states.shape} for {counts.shape[0]} rows with up to {length} valid "
            "tokens; expected (rows, positions >= valid tokens, hidden)"
        )
    tokens = torch.from_numpy(np.ascontiguousarray(states[:, :length], dtype=np.float32))
    mask = torch.arange(length).unsqueeze(0) < torch.from_numpy(counts).unsqueeze(1)
    return {"teacher_token_states": tokens, "teacher_token_mask": mask.long()}
