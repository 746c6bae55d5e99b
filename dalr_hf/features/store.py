"""The paired feature store: a memory-mapped ``datasets`` folder plus a ``dalr_features.json`` metadata file.

One row per (image, caption): ``image_id`` (string), ``caption`` (string), ``image_features`` (fixed-length float32
list of dim D) and optionally ``caption_features`` (same D). The folder is written with ``Dataset.save_to_disk`` and
read back with ``Dataset.load_from_disk``, which memory-maps the Arrow files: 150k pairs at D = 768 are ~0.9 GB on
disk and are never loaded into RAM as a whole.

The metadata file is written last, atomically, so its presence marks a complete store. It records the byte size of
every Arrow file so that a truncated copy is refused with a clear error instead of surfacing as an Arrow error deep
inside a dataloader worker.

This module also holds the sharded writer shared by extraction, the KDMCSE import and the teacher cache: work is
written as small, validated shards under ``<output>/_partial`` (so an interrupted job resumes from the last complete
shard and memory stays bounded by one shard), then concatenated memory-mapped into the final folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, Value, concatenate_datasets

from dalr_hf.files import file_sha256, json_sha256, write_json_atomic  # noqa: F401  (re-exported for features/)

try:  # datasets >= 4 calls a (fixed-length) list feature `List`; 3.x calls it `Sequence`
    from datasets import List as ListFeature
except ImportError:  # pragma: no cover - datasets 3.x
    from datasets import Sequence as ListFeature

logger = logging.getLogger(__name__)

FEATURE_STORE_FORMAT = "dalr_hf.feature_store"
FEATURE_STORE_VERSION = 1
FEATURE_STORE_METADATA = "dalr_features.json"
PARTIAL_DIRNAME = "_partial"
REQUIRED_COLUMNS = ("image_id", "caption", "image_features")
FEATURE_COLUMNS = ("image_features", "caption_features")
# Keys a caller must supply to save_feature_store; the rest (dims, counts, files) are computed.
CALLER_METADATA_KEYS = ("model", "pretrained", "weights_sha256", "normalized", "source")
# Tolerance on |‖x‖ - 1| when metadata claims the features are L2-normalised (float32 round-off is ~1e-7).
NORM_TOLERANCE = 1e-3
_DATASET_FILES = ("state.json", "dataset_info.json")


# ---------------------------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------------------------
def read_json(path: str | os.PathLike, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON ({e}); the file is truncated or corrupt") from e


def float_list_feature(dim: int, dtype: str = "float32") -> ListFeature:
    """A fixed-length list feature (Arrow ``fixed_size_list``) of ``dim`` values."""
    return ListFeature(Value(dtype), length=int(dim))


def feature_store_features(image_dim: int, caption_dim: int | None) -> Features:
    columns: dict[str, Any] = {
        "image_id": Value("string"),
        "caption": Value("string"),
        "image_features": float_list_feature(image_dim),
    }
    if caption_dim is not None:
        columns["caption_features"] = float_list_feature(caption_dim)
    return Features(columns)


def fixed_size_array(matrix: np.ndarray, dtype: np.dtype | type = np.float32) -> pa.FixedSizeListArray:
    """An (N, D) matrix as an Arrow fixed-size-list array without a round trip through Python floats."""
    matrix = np.ascontiguousarray(matrix, dtype=dtype)
    if matrix.ndim != 2:
        raise ValueError(f"expected an (N, D) matrix, got shape {matrix.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


@contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence datasets' per-save progress bars (one per shard would bury the extraction's own bar)."""
    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _data_files(folder: Path) -> list[str]:
    """The Arrow files of a ``save_to_disk`` folder, as listed in its ``state.json``."""
    if not (folder / "state.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is incomplete: 'state.json' is missing (expected a folder written "
            "by datasets' save_to_disk)"
        )
    state = read_json(folder / "state.json", "dataset state file")
    return [entry["filename"] for entry in state.get("_data_files", [])]


def _file_sizes(folder: Path) -> dict[str, int]:
    return {name: os.path.getsize(folder / name) for name in _data_files(folder)}


def load_dataset_folder(folder: Path, what: str) -> Dataset:
    """``Dataset.load_from_disk`` with errors that name the folder and the file at fault."""
    for name in _DATASET_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{what} {str(folder)!r} is incomplete: {name!r} is missing (expected a folder written by "
                "datasets' save_to_disk)"
            )
    try:
        return Dataset.load_from_disk(str(folder))
    except (OSError, pa.ArrowInvalid, ValueError) as e:
        raise ValueError(
            f"{what} {str(folder)!r} cannot be read: {e}. The Arrow files are truncated or corrupt; rebuild it"
        ) from e


def check_file_sizes(folder: Path, expected: Mapping[str, int], what: str) -> None:
    actual_names = set(_data_files(folder))
    if actual_names != set(expected):
        raise ValueError(
            f"{what} {str(folder)!r}: its Arrow files {sorted(actual_names)} differ from those its metadata lists "
            f"{sorted(expected)}; the folder was modified after it was written"
        )
    for name, size in expected.items():
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{what} {str(folder)!r}: Arrow file {name!r} is missing")
        actual = path.stat().st_size
        if actual != int(size):
            raise ValueError(
                f"{what} {str(folder)!r}: Arrow file {name!r} has {actual} bytes, expected {size} "
                "(truncated or partially copied); copy it again or rebuild the store"
            )


def remove_store_files(folder: Path, metadata_name: str) -> None:
    """Delete what a previous store wrote into ``folder`` (and only that), including an unfinished ``_partial``."""
    for path in folder.glob("data-*-of-*.arrow"):
        path.unlink()
    for name in (*_DATASET_FILES, metadata_name):
        if (folder / name).exists():
            (folder / name).unlink()
    if (folder / PARTIAL_DIRNAME).exists():
        shutil.rmtree(folder / PARTIAL_DIRNAME)


def describe_differences(expected: Mapping[str, Any], actual: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(expected) | set(actual))
    return [f"{k}: {actual.get(k)!r} != {expected.get(k)!r}" for k in keys if expected.get(k) != actual.get(k)]


# ---------------------------------------------------------------------------------------------------------------------
# sharded writing with resume
# ---------------------------------------------------------------------------------------------------------------------
class ShardedWriter:
    """Writes numbered shards under ``<output_dir>/_partial`` and assembles them into the final folder.

    A shard is complete when its manifest exists and the shard's Arrow files match the sizes and sha256 digests the
    manifest records; only then is it reused on resume. Shards are written to a temporary folder and renamed, and the
    manifest is written after the rename, so a process killed at any point leaves either a complete shard or one that
    is recomputed. ``run_config`` identifies the job: a partial folder left by a job with another configuration is
    refused (or cleared with ``overwrite=True``), never mixed in.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        run_config: Mapping[str, Any],
        *,
        what: str,
        resume: bool = True,
        overwrite: bool = False,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.partial_dir = self.output_dir / PARTIAL_DIRNAME
        self.run_config = json.loads(json.dumps(dict(run_config), default=str))
        self.what = what
        self.resume = resume
        self.overwrite = overwrite
        self.reused = 0
        self.written = 0

    def open(self) -> None:
        run_file = self.partial_dir / "run.json"
        if self.partial_dir.exists():
            previous = read_json(run_file, "partial-run file") if run_file.is_file() else None
            if not self.resume or previous is None:
                shutil.rmtree(self.partial_dir)
            elif previous != self.run_config:
                if not self.overwrite:
                    diffs = describe_differences(previous, self.run_config)
                    raise ValueError(
                        f"{str(self.partial_dir)!r} holds an unfinished {self.what} made with another configuration "
                        f"(this run vs the unfinished one: {'; '.join(diffs)}). Rerun with the original settings to "
                        "resume it, or pass overwrite=True (--overwrite) to discard it"
                    )
                shutil.rmtree(self.partial_dir)
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_file, self.run_config)

    def _shard_dir(self, index: int) -> Path:
        return self.partial_dir / f"shard-{index:05d}"

    def _manifest_path(self, index: int) -> Path:
        return self.partial_dir / f"shard-{index:05d}.json"

    def completed(self, index: int, key: str) -> dict | None:
        """The manifest of shard ``index`` if it is complete and was made from the same inputs (``key``)."""
        manifest_path = self._manifest_path(index)
        if not manifest_path.is_file():
            return None
        folder = self._shard_dir(index)
        try:
            manifest = read_json(manifest_path, "shard manifest")
            if manifest.get("key") != key:
                raise ValueError("it was made from other inputs")
            for name, entry in manifest["files"].items():
                path = folder / name
                if not path.is_file() or path.stat().st_size != entry["size"] or file_sha256(path) != entry["sha256"]:
                    raise ValueError(f"Arrow file {name!r} is missing or differs from its manifest")
            # a shard whose images were all skipped has no rows and no folder (datasets cannot save 0 rows)
            if manifest["num_rows"] and len(load_dataset_folder(folder, "shard")) != manifest["num_rows"]:
                raise ValueError("its row count differs from its manifest")
        except (ValueError, KeyError, OSError) as e:
            logger.warning(
                "%s shard %d in %s is not reusable (%s); recomputing it", self.what, index, self.partial_dir, e
            )
            manifest_path.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            return None
        self.reused += 1
        return manifest

    def write(
        self,
        index: int,
        key: str,
        columns: Mapping[str, Any],
        features: Features,
        extra: Mapping[str, Any] | None = None,
    ) -> dict:
        folder = self._shard_dir(index)
        tmp = folder.with_name(folder.name + ".tmp")
        for stale in (tmp, folder):
            if stale.exists():
                shutil.rmtree(stale)
        dataset = Dataset.from_dict(dict(columns), features=features)
        files = {}
        if len(dataset):
            with quiet_datasets():
                dataset.save_to_disk(str(tmp))
            os.replace(tmp, folder)
            files = {
                name: {"size": os.path.getsize(folder / name), "sha256": file_sha256(folder / name)}
                for name in _data_files(folder)
            }
        manifest = {"key": key, "num_rows": len(dataset), "files": files, **dict(extra or {})}
        write_json_atomic(self._manifest_path(index), manifest)
        self.written += 1
        return manifest

    def assemble(self, num_shards: int, metadata_name: str, metadata: dict) -> dict:
        """Concatenate the shards (memory-mapped) into ``output_dir``; write the metadata last; drop ``_partial``."""
        shards = [
            load_dataset_folder(self._shard_dir(i), "shard")
            for i in range(num_shards)
            if read_json(self._manifest_path(i), "shard manifest")["num_rows"]
        ]
        if not shards:
            raise ValueError(f"{self.what}: no rows were produced, nothing to write to {str(self.output_dir)!r}")
        combined = shards[0] if len(shards) == 1 else concatenate_datasets(shards)
        finalize_folder(combined, self.output_dir, metadata_name, metadata, keep_partial=True)
        shutil.rmtree(self.partial_dir)
        return metadata


def finalize_folder(
    dataset: Dataset, folder: Path, metadata_name: str, metadata: dict, keep_partial: bool = False
) -> dict:
    """Save ``dataset`` into ``folder`` and write the metadata (with the Arrow file sizes) last."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("data-*-of-*.arrow"):
        path.unlink()
    for name in (*_DATASET_FILES, metadata_name):
        (folder / name).unlink(missing_ok=True)
    if not keep_partial and (folder / PARTIAL_DIRNAME).exists():
        shutil.rmtree(folder / PARTIAL_DIRNAME)
    dataset.save_to_disk(str(folder))
    metadata["num_rows"] = len(dataset)
    metadata["files"] = _file_sizes(folder)
    write_json_atomic(folder / metadata_name, metadata)
    return metadata


def check_output_folder(folder: Path, metadata_name: str, overwrite: bool, what: str) -> dict | None:
    """The metadata of a complete store already in ``folder`` (or None); refuse to write over foreign content."""
    meta_path = folder / metadata_name
    if meta_path.is_file():
        return read_json(meta_path, f"{what} metadata")
    if folder.is_dir() and not overwrite:
        foreign = [p.name for p in folder.iterdir() if p.name != PARTIAL_DIRNAME]
        if foreign:
            raise FileExistsError(
                f"{str(folder)!r} is not empty ({', '.join(sorted(foreign)[:5])}) and holds no {what}; choose an "
                "empty or new folder, or pass overwrite=True (--overwrite) to replace store files in it"
            )
    return None


def run_config_entries(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata entries that identify the job that made a store: its ``run_config`` and that config's digest
    (what :func:`store_already_made` compares)."""
    return {"config_sha256": json_sha256(run_config), "run_config": run_config}


def store_already_made(
    folder: Path, metadata_name: str, run_config: Mapping[str, Any], overwrite: bool, what: str
) -> bool:
    """Whether ``folder`` already holds the complete ``what`` that ``run_config`` describes (the caller loads it).

    A complete store made with another configuration is refused naming the differences, or, with ``overwrite``, its
    store files are removed; foreign content is refused by :func:`check_output_folder`.
    """
    existing = check_output_folder(folder, metadata_name, overwrite, what)
    if existing is None:
        return False
    if existing.get("config_sha256") == json_sha256(run_config) and not overwrite:
        logger.info("%s already holds this %s; loading it", folder, what)
        return True
    if not overwrite:
        diffs = describe_differences(existing.get("run_config", {}), run_config)
        raise FileExistsError(
            f"{str(folder)!r} already holds a {what} made with another configuration "
            f"(this run vs the store: {'; '.join(diffs) or 'unknown'}); pass overwrite=True (--overwrite) to "
            "replace it"
        )
    remove_store_files(folder, metadata_name)
    return False


# ---------------------------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------------------------
def check_fixed_float_column(dataset: Dataset, column: str, dim: int | None, where: str) -> int:
    """The fixed length of a float list column; raises naming ``where`` if it is not one (or not ``dim`` long)."""
    feature = dataset.features.get(column)
    if feature is None:
        raise ValueError(f"{where}: column {column!r} missing (columns: {list(dataset.column_names)})")
    if not isinstance(feature, ListFeature) or not isinstance(feature.feature, Value) or feature.length in (-1, None):
        raise ValueError(f"{where}: column {column!r} must be a fixed-length float list, got {feature}")
    if not str(feature.feature.dtype).startswith("float"):
        raise ValueError(f"{where}: column {column!r} must hold floats, got {feature.feature.dtype}")
    if dim is not None and feature.length != dim:
        raise ValueError(f"{where}: column {column!r} has dim {feature.length}, but the metadata says {dim}")
    return int(feature.length)


def iter_float_batches(dataset: Dataset, column: str, batch_size: int = 8192) -> Iterable[tuple[int, np.ndarray]]:
    """(start row, (n, D) array) batches of a fixed-length float column, read from the Arrow buffers."""
    table = dataset.select_columns([column]).with_format("numpy")
    for start in range(0, len(dataset), batch_size):
        yield start, np.asarray(table[start : start + batch_size][column])


def check_finite_and_norm(dataset: Dataset, column: str, normalized: bool, where: str) -> None:
    ids = dataset["image_id"] if "image_id" in dataset.column_names else None
    for start, block in iter_float_batches(dataset, column):
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():
            row = start + int(np.argmax(bad))
            name = f" (image_id {ids[row]!r})" if ids is not None else ""
            raise ValueError(f"{where}: column {column!r} has NaN/Inf values at row {row}{name}")
        if normalized:
            norms = np.linalg.norm(block.astype(np.float64), axis=1)
            off = np.abs(norms - 1.0) > NORM_TOLERANCE
            if off.any():
                row = start + int(np.argmax(off))
                raise ValueError(
                    f"{where}: metadata says normalized=True but row {row} of {column!r} has L2 norm "
                    f"{norms[row]:.6f}; L2-normalise the features or set normalized=False"
                )


def load_feature_store(path: str | os.PathLike) -> tuple[Dataset, dict]:
    """Open a paired feature store, memory-mapped, after checking it against its metadata.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the folder and what was expected when the metadata is
    missing or of another format, a column is missing or has the wrong type or dim, an Arrow file is missing or
    truncated, or the row count differs from the metadata. An unfinished extraction is reported as such.
    """
    folder = Path(path)
    where = f"feature store {str(folder)!r}"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{where} does not exist (expected a folder written by extract_features, "
            "import_kdmcse_json or save_feature_store)"
        )
    meta_path = folder / FEATURE_STORE_METADATA
    if not meta_path.is_file():
        if (folder / PARTIAL_DIRNAME).is_dir():
            raise FileNotFoundError(
                f"{where} is unfinished: {FEATURE_STORE_METADATA!r} is missing and {PARTIAL_DIRNAME!r} holds partial "
                "work. Rerun the same extraction command to resume it"
            )
        raise FileNotFoundError(
            f"{where}: metadata file {FEATURE_STORE_METADATA!r} is missing; this folder is not a dalr_hf feature store"
        )
    metadata = read_json(meta_path, "feature-store metadata")
    if not isinstance(metadata, dict) or metadata.get("format") != FEATURE_STORE_FORMAT:
        found = metadata.get("format") if isinstance(metadata, dict) else type(metadata).__name__
        raise ValueError(f"{where}: {FEATURE_STORE_METADATA!r} has format {found!r}, expected {FEATURE_STORE_FORMAT!r}")
    if metadata.get("version") != FEATURE_STORE_VERSION:
        raise ValueError(
            f"{where}: store version {metadata.get('version')!r} is not supported "
            f"(this dalr_hf reads version {FEATURE_STORE_VERSION}); rebuild the store"
        )
    missing = [
        k
        for k in (*CALLER_METADATA_KEYS, "image_dim", "caption_dim", "num_rows", "num_images", "files")
        if k not in metadata
    ]
    if missing:
        raise ValueError(f"{where}: metadata lacks {missing}")
    check_file_sizes(folder, metadata["files"], "feature store")
    dataset = load_dataset_folder(folder, "feature store")
    for column in REQUIRED_COLUMNS:
        if column not in dataset.column_names:
            raise ValueError(f"{where}: column {column!r} missing (columns: {dataset.column_names})")
    check_fixed_float_column(dataset, "image_features", int(metadata["image_dim"]), where)
    if metadata["caption_dim"] is not None:
        check_fixed_float_column(dataset, "caption_features", int(metadata["caption_dim"]), where)
    elif "caption_features" in dataset.column_names:
        raise ValueError(f"{where}: column 'caption_features' present but the metadata says caption_dim is null")
    if len(dataset) != metadata["num_rows"]:
        raise ValueError(
            f"{where}: {len(dataset)} rows on disk, but the metadata says {metadata['num_rows']}; "
            "the store is truncated or stale"
        )
    return dataset, metadata


# ---------------------------------------------------------------------------------------------------------------------
# writing a store from memory
# ---------------------------------------------------------------------------------------------------------------------
def _as_matrix(values: Any, column: str) -> np.ndarray:
    try:
        matrix = np.asarray(values, dtype=np.float32)
    except ValueError as e:
        raise ValueError(f"column {column!r}: rows have different lengths ({e})") from e
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"column {column!r} must be (num_rows, D) floats, got shape {matrix.shape}")
    return matrix


def _columns_from_rows(rows: Sequence[Mapping[str, Any]]) -> dict[str, list]:
    if not rows:
        raise ValueError("save_feature_store got no rows")
    names = list(rows[0])
    columns: dict[str, list] = {name: [] for name in names}
    for i, row in enumerate(rows):
        if set(row) != set(names):
            raise ValueError(f"row {i} has columns {sorted(row)}, row 0 has {sorted(names)}")
        for name in names:
            columns[name].append(row[name])
    return columns


def _dataset_from_memory(data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Dataset:
    columns = dict(data) if isinstance(data, Mapping) else _columns_from_rows(data)
    for name in REQUIRED_COLUMNS:
        if name not in columns:
            raise ValueError(f"column {name!r} missing (got {sorted(columns)})")
    extra = sorted(set(columns) - {*REQUIRED_COLUMNS, "caption_features"})
    if extra:
        allowed = [*REQUIRED_COLUMNS, "caption_features"]
        raise ValueError(f"unexpected column(s) {extra}; a feature store holds {allowed}")
    n = len(columns["image_id"])
    image = _as_matrix(columns["image_features"], "image_features")
    caption = _as_matrix(columns["caption_features"], "caption_features") if "caption_features" in columns else None
    for name, values in (("caption", columns["caption"]), ("image_features", image), ("caption_features", caption)):
        if values is not None and len(values) != n:
            raise ValueError(f"column {name!r} has {len(values)} rows, 'image_id' has {n}")
    mapping: dict[str, Any] = {
        "image_id": pa.array([str(v) for v in columns["image_id"]], pa.string()),
        "caption": pa.array([str(v) for v in columns["caption"]], pa.string()),
        "image_features": fixed_size_array(image),
    }
    if caption is not None:
        mapping["caption_features"] = fixed_size_array(caption)
    features = feature_store_features(image.shape[1], None if caption is None else caption.shape[1])
    return Dataset.from_dict(mapping, features=features)


def _cast_dataset(dataset: Dataset) -> Dataset:
    for name in REQUIRED_COLUMNS:
        if name not in dataset.column_names:
            raise ValueError(f"column {name!r} missing (columns: {dataset.column_names})")
    extra = [c for c in dataset.column_names if c not in (*REQUIRED_COLUMNS, "caption_features")]
    if extra:
        dataset = dataset.remove_columns(extra)
        logger.info("save_feature_store: dropped column(s) %s, which a feature store does not hold", extra)
    dims = {}
    for name in FEATURE_COLUMNS:
        if name not in dataset.column_names:
            continue
        feature = dataset.features[name]
        length = getattr(feature, "length", -1)
        if length in (-1, None):
            first = np.asarray(dataset[0][name])
            length = int(first.shape[-1])
        dims[name] = int(length)
    target = feature_store_features(dims["image_features"], dims.get("caption_features"))
    if dataset.features != target:
        dataset = dataset.cast(target)
    return dataset


def save_feature_store(
    rows_or_dataset: Dataset | Mapping[str, Any] | Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    metadata: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> Dataset:
    """Write a valid feature store from a ``Dataset``, a dict of columns or a list of row dicts; return it loaded.

    ``metadata`` must hold ``model``, ``pretrained``, ``weights_sha256`` (None when unknown), ``normalized`` and
    ``source``; any other keys (e.g. ``stand_in``) are kept. ``format``, ``version``, ``image_dim``, ``caption_dim``,
    ``num_images``, ``num_rows`` and the Arrow file sizes are computed here. Feature columns are stored as fixed-length
    float32 lists; NaN/Inf values, and rows that are not unit-norm when ``normalized`` is True, are refused.
    """
    missing = [k for k in CALLER_METADATA_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"save_feature_store: metadata lacks {missing} (required: {list(CALLER_METADATA_KEYS)})")
    if not isinstance(metadata["normalized"], bool):
        raise ValueError(f"save_feature_store: metadata 'normalized' must be a bool, got {metadata['normalized']!r}")
    folder = Path(path)
    if isinstance(rows_or_dataset, Dataset):
        dataset = _cast_dataset(rows_or_dataset)
    else:
        dataset = _dataset_from_memory(rows_or_dataset)
    if len(dataset) == 0:
        raise ValueError("save_feature_store: the dataset has no rows")
    where = f"save_feature_store({str(folder)!r})"
    image_dim = check_fixed_float_column(dataset, "image_features", metadata.get("image_dim"), where)
    caption_dim = None
    if "caption_features" in dataset.column_names:
        caption_dim = check_fixed_float_column(dataset, "caption_features", metadata.get("caption_dim"), where)
    for name in FEATURE_COLUMNS:
        if name in dataset.column_names:
            check_finite_and_norm(dataset, name, metadata["normalized"], where)
    if check_output_folder(folder, FEATURE_STORE_METADATA, overwrite, "feature store") is not None and not overwrite:
        raise FileExistsError(f"{str(folder)!r} already holds a feature store; pass overwrite=True to replace it")
    num_images = len(set(dataset["image_id"]))
    full = {
        **dict(metadata),
        "format": FEATURE_STORE_FORMAT,
        "version": FEATURE_STORE_VERSION,
        "image_dim": image_dim,
        "caption_dim": caption_dim,
        "num_images": num_images,
        "num_rows": len(dataset),
    }
    finalize_folder(dataset, folder, FEATURE_STORE_METADATA, full)
    return load_feature_store(folder)[0]


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalisation in float32 (a zero row stays zero rather than becoming NaN)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, np.finfo(np.float32).tiny)).astype(np.float32)


def is_unit_norm(matrix: np.ndarray) -> bool:
    """Whether every row has L2 norm 1 within :data:`NORM_TOLERANCE` (False for an empty matrix)."""
    norms = np.linalg.norm(np.asarray(matrix, dtype=np.float64), axis=1)
    return bool(norms.size) and bool(np.all(np.abs(norms - 1.0) <= NORM_TOLERANCE))
