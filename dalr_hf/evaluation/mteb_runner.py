"""Run MTEB on a student and write leaderboard-ready results.

* ``run_mteb(model, tasks="sts")`` runs the standard MTEB tasks ``STS12``…``STS16``, ``STSBenchmark`` and
  ``SICK-R`` (their data comes from the Hugging Face Hub); any list of MTEB task names works too.
* ``tasks="local-sts"`` runs the bundled SentEval STS files wrapped as MTEB tasks (``SentEvalSTS12`` …), fully
  offline. They are *not* the leaderboard tasks (SentEval's lower-cased, tokenised copy; SICK-R test split only)
  and are named differently so that they can never be mistaken for them.
* ``tasks="mock"`` runs mteb's own in-package mock tasks (CI smoke test, no data needed).

Results are written in the layout of MTEB's results repository
(``<output_dir>/results/<org>__<model>/<revision>/<TaskName>.json`` plus ``model_meta.json``), which is what
``mteb submit-results --output-folder <output_dir>`` submits. The :class:`mteb.ModelMeta` records the revision and
the training data, including STS-B (its dev split selects the checkpoint); ``model_meta_snippet.py`` holds the same
metadata as Python source for the model-registry PR to mteb (docs/evaluation.md walks through the submission).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from dalr_hf.evaluation.api import load_model
from dalr_hf.evaluation.data import STS_TASKS, STS_YEAR_SUBSETS, load_sts_task, resolve_data_dir

logger = logging.getLogger(__name__)

MTEB_STS_TASKS: tuple[str, ...] = ("STS12", "STS13", "STS14", "STS15", "STS16", "STSBenchmark", "SICK-R")
LOCAL_TASK_NAMES: dict[str, str] = {
    **{t: f"SentEval{t}" for t in STS_YEAR_SUBSETS},
    "STSBenchmark": "SentEvalSTSBenchmark",
    "SICKRelatedness": "SentEvalSICK-R",
}
# Text-only mock tasks shipped inside the mteb package (no download); one per main task family.
MOCK_TASKS: tuple[str, ...] = (
    "MockSTSTask",
    "MockClassificationTask",
    "MockPairClassificationTask",
    "MockClusteringTask",
    "MockRetrievalTask",
    "MockRerankingTask",
)
# MTEB task names of DALR's training data. STS-B is listed because its dev split selects the checkpoint (the
# reference evaluates it every 125 steps and keeps the best model); the caption data is trained on.
DALR_TRAINING_DATASETS: frozenset[str] = frozenset({"STSBenchmark"})
CAPTION_TRAINING_DATASETS: dict[str, frozenset[str]] = {
    "flickr30k": frozenset({"Flickr30kI2TRetrieval", "Flickr30kT2IRetrieval"}),
    "coco": frozenset({"MSCOCOI2TRetrieval", "MSCOCOT2IRetrieval"}),
}
NO_REVISION = "no_revision_available"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


# --------------------------------------------------------------------------------------------------------------
# Offline tasks: the bundled SentEval STS data as MTEB tasks
# --------------------------------------------------------------------------------------------------------------


def _files_revision(paths: Iterable[str]) -> str:
    digest = hashlib.sha1()
    for path in sorted(paths):
        digest.update(Path(path).name.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def local_sts_tasks(tasks: Sequence[str] = STS_TASKS, data_dir: str | os.PathLike[str] | None = None) -> list[Any]:
    """MTEB ``AbsTaskSTS`` instances over the SentEval STS files (no Hub access).

    Pairs and gold scores are exactly those :func:`~dalr_hf.evaluation.sts.evaluate_sts` scores; MTEB pools all
    pairs of a task into one correlation, so ``cosine_spearman`` equals this suite's ``"all"`` aggregation.
    The dataset revision recorded in the results is a SHA-1 of the files' contents.
    """
    from datasets import Dataset, DatasetDict
    from mteb.abstasks.sts import AbsTaskSTS
    from mteb.abstasks.task_metadata import TaskMetadata

    root = resolve_data_dir(data_dir)
    instances = []
    for task in tasks:
        if task not in LOCAL_TASK_NAMES:
            raise ValueError(f"no local MTEB wrapper for {task!r}; available: {sorted(LOCAL_TASK_NAMES)}")
        data = load_sts_task(task, root, warn=False)
        revision = _files_revision(f.path for f in data.report.files)
        metadata = TaskMetadata(
            name=LOCAL_TASK_NAMES[task],
            dataset={"path": f"local/senteval/{task}", "revision": revision},
            description=f"{task} {data.split} split from SentEval's downstream data (offline dalr_hf wrapper).",
            reference="https://github.com/facebookresearch/SentEval",
            type="STS",
            category="t2t",
            modalities=["text"],
            eval_splits=["test"],
            eval_langs=["eng-Latn"],
            main_score="cosine_spearman",
            domains=["Written"],
            task_subtypes=[],
            license="not specified",
            annotations_creators="human-annotated",
            dialect=[],
            sample_creation="found",
            bibtex_citation="",
        )

        def load_data(self: Any, num_proc: int | None = None, _task: str = task, **kwargs: Any) -> None:
            loaded = load_sts_task(_task, root)
            self.dataset = DatasetDict(
                {
                    "test": Dataset.from_dict(
                        {
                            "sentence1": loaded.sentences1,
                            "sentence2": loaded.sentences2,
                            "score": loaded.scores.tolist(),
                        }
                    )
                }
            )
            self.data_loaded = True

        cls = type(
            f"{LOCAL_TASK_NAMES[task].replace('-', '')}Task",
            (AbsTaskSTS,),
            {"metadata": metadata, "min_score": 0, "max_score": 5, "load_data": load_data},
        )
        instances.append(cls())
    return instances


def mock_tasks(names: Sequence[str] = MOCK_TASKS) -> list[Any]:
    """mteb's own in-package mock tasks (tiny, offline)."""
    from mteb.mocks import MOCK_TASK_REGISTRY

    missing = [n for n in names if n not in MOCK_TASK_REGISTRY]
    if missing:
        raise ValueError(f"unknown mteb mock task(s) {missing}")
    return [MOCK_TASK_REGISTRY[n]() for n in names]


def resolve_mteb_tasks(tasks: str | Sequence[Any], data_dir: str | os.PathLike[str] | None = None) -> list[Any]:
    """``"sts"`` (standard MTEB STS tasks), ``"local-sts"``, ``"mock"``, task names or task objects.

    Names may be standard MTEB task names, names of mteb's mock tasks (``MockSTSTask``…) or of the offline
    wrappers (``SentEvalSTS12``…); they may be mixed, comma-separated in one string.
    """
    import mteb
    from mteb.mocks import MOCK_TASK_REGISTRY

    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    local_by_name = {v: k for k, v in LOCAL_TASK_NAMES.items()}
    resolved: list[Any] = []
    standard: list[str] = []
    for item in tasks:
        if not isinstance(item, str):
            resolved.append(item)
            continue
        key = item.lower()
        if key == "sts":
            standard += list(MTEB_STS_TASKS)
        elif key == "local-sts":
            resolved += local_sts_tasks(STS_TASKS, data_dir)
        elif key == "mock":
            resolved += mock_tasks()
        elif item in MOCK_TASK_REGISTRY:
            resolved += mock_tasks([item])
        elif item in local_by_name:
            resolved += local_sts_tasks([local_by_name[item]], data_dir)
        else:
            standard.append(item)
    if standard:
        resolved += list(mteb.get_tasks(tasks=standard))
    if not resolved:
        raise ValueError("no MTEB task selected")
    return resolved


# --------------------------------------------------------------------------------------------------------------
# Model metadata
# --------------------------------------------------------------------------------------------------------------


# Hub datasets a DALR card names -> the MTEB tasks built on the same data (training_datasets of ModelMeta)
_CAPTION_HUB_DATASETS = {"nlphuji/flickr30k": "flickr30k", "yerevann/coco-karpathy": "coco"}
_CARD_MARKER = re.compile(r"<!-- generated by dalr_hf\.publish \(model: (?P<model>[^)\n]*)\) -->")


@dataclass
class CardMetadata:
    """What a model folder's DALR card (``README.md``) says about the model, for its MTEB metadata."""

    model_id: str | None = None
    base_model: str | None = None
    datasets: list[str] = field(default_factory=list)
    license: str | None = None
    languages: list[str] = field(default_factory=list)
    citation: str | None = None

    @property
    def caption_data(self) -> str | None:
        for hub_id in self.datasets:
            if hub_id in _CAPTION_HUB_DATASETS:
                return _CAPTION_HUB_DATASETS[hub_id]
        return None

    def model_name(self) -> str | None:
        """``org/name``: the Hub id the card was written for, else ``local/dalr-<base model>``."""
        if self.model_id:
            return self.model_id
        if self.base_model:
            return f"local/dalr-{self.base_model.split('/')[-1]}"
        return None


def read_card_metadata(folder: str | os.PathLike[str]) -> CardMetadata | None:
    """The metadata of the DALR card in ``folder`` (None when the folder has no card written by dalr_hf)."""
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return None
    return card_metadata_from_text(readme.read_text(encoding="utf-8"))


def card_metadata_from_text(text: str | None) -> CardMetadata | None:
    """The metadata of a DALR card's text (None for any other card, or no card)."""
    if not text:
        return None
    marker = _CARD_MARKER.search(text)
    if marker is None:
        return None
    from huggingface_hub import ModelCard

    data = ModelCard(text).data.to_dict()
    model_id = marker.group("model")
    languages = data.get("language") or []
    citation = re.search(r"\n(@inproceedings\{he2025dalr,.*?\n\})", text, re.DOTALL)
    return CardMetadata(
        model_id=model_id if re.fullmatch(r"[\w.-]+/[\w.-]+", model_id) and model_id != "path/to/this/model" else None,
        base_model=data.get("base_model") if isinstance(data.get("base_model"), str) else None,
        datasets=[d for d in data.get("datasets") or [] if isinstance(d, str)],
        license=data.get("license"),
        languages=[languages] if isinstance(languages, str) else list(languages),
        citation=citation.group(1) if citation else None,
    )


# MTEB's language codes of the card's ISO 639-1 codes (the languages a DALR card can name)
_MTEB_LANGUAGES = {"en": "eng-Latn"}


def infer_model_name(model: str | os.PathLike[str] | SentenceTransformer) -> str:
    """``org/name`` for MTEB: the Hub id when ``model`` is one, else ``local/<folder name>``."""
    if isinstance(model, SentenceTransformer):
        card = model.model_card_data
        candidate = card.model_id or card.model_name
        return candidate if candidate and "/" in candidate else f"local/{candidate or 'dalr-student'}"
    text = str(model)
    if not Path(text).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        return text
    return f"local/{Path(text).resolve().name}"


def infer_revision(model: str | os.PathLike[str] | SentenceTransformer) -> str:
    """The Hub commit of a model loaded from the Hugging Face cache (``.../snapshots/<sha>``), else
    ``no_revision_available`` (mteb's convention). Pass the commit of the pushed model for a submission."""
    if isinstance(model, SentenceTransformer):
        revision = model.model_card_data.base_model_revision
        return revision if revision else NO_REVISION
    path = Path(str(model))
    if path.exists():
        resolved = path.resolve()
        if resolved.parent.name == "snapshots" and _SHA_RE.match(resolved.name):
            return resolved.name
        return NO_REVISION
    try:
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(str(model), local_files_only=True))
        return snapshot.name if _SHA_RE.match(snapshot.name) else NO_REVISION
    except Exception:  # noqa: BLE001 -- not in the local cache: unknown revision
        return NO_REVISION


def build_model_meta(
    model: SentenceTransformer,
    name: str,
    revision: str | None = None,
    *,
    base_model: str | None = None,
    caption_data: str | None = "flickr30k",
    training_datasets: Iterable[str] | None = None,
    license: str | None = "apache-2.0",
    release_date: str | None = None,
    reference: str | None = None,
    public_training_code: str | None = None,
    public_training_data: str | None = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse",
    citation: str | None = None,
    languages: Sequence[str] = ("eng-Latn",),
) -> Any:
    """A :class:`mteb.models.model_meta.ModelMeta` describing a DALR student for a leaderboard submission.

    ``training_datasets`` (MTEB task names) defaults to ``STSBenchmark`` — its dev split selects the checkpoint —
    plus the MTEB tasks of the image-caption corpus (``caption_data``: ``"flickr30k"``, ``"coco"`` or ``None``).
    """
    from mteb.models.model_meta import ModelMeta, ScoringFunction
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    if training_datasets is None:
        if caption_data is not None and caption_data not in CAPTION_TRAINING_DATASETS:
            raise ValueError(f"caption_data must be one of {sorted(CAPTION_TRAINING_DATASETS)} or None")
        datasets = set(DALR_TRAINING_DATASETS) | set(CAPTION_TRAINING_DATASETS.get(caption_data or "", ()))
    else:
        datasets = set(training_datasets)
    n_parameters = sum(p.numel() for p in model.parameters())
    backbone = getattr(model[0], "auto_model", None)
    embedding_layer = backbone.get_input_embeddings() if backbone is not None else None
    n_embedding = int(embedding_layer.weight.numel()) if embedding_layer is not None else None
    meta = ModelMeta(
        loader=SentenceTransformerEncoderWrapper,
        name=name,
        revision=revision or NO_REVISION,
        release_date=release_date or datetime.date.today().isoformat(),
        languages=list(languages),
        n_parameters=n_parameters,
        n_embedding_parameters=n_embedding,
        memory_usage_mb=round(n_parameters * 4 / 1024**2),
        max_tokens=model.max_seq_length,
        embed_dim=model.get_embedding_dimension(),
        license=license,
        open_weights=True,
        public_training_code=public_training_code,
        public_training_data=public_training_data,
        framework=["Sentence Transformers", "PyTorch"],
        reference=reference,
        similarity_fn_name=ScoringFunction("cosine"),
        use_instructions=False,
        training_datasets=datasets,
        adapted_from=base_model,
        citation=citation,
        modalities=["text"],
    )
    return meta


def model_meta_python(meta: Any, variable: str = "dalr_student") -> str:
    """Python source of ``meta`` for a PR adding the model to mteb's registry (mteb/models/model_implementations)."""
    data = meta.to_dict()
    fields = [
        "name",
        "revision",
        "release_date",
        "languages",
        "n_parameters",
        "n_embedding_parameters",
        "memory_usage_mb",
        "max_tokens",
        "embed_dim",
        "license",
        "open_weights",
        "public_training_code",
        "public_training_data",
        "framework",
        "reference",
        "use_instructions",
        "adapted_from",
        "citation",
        "modalities",
    ]
    lines = [
        "from mteb.models.model_meta import ModelMeta, ScoringFunction",
        "from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper",
        "",
        f"{variable} = ModelMeta(",
        "    loader=SentenceTransformerEncoderWrapper,",
    ]
    for key in fields:
        lines.append(f"    {key}={data[key]!r},")
    lines.append("    similarity_fn_name=ScoringFunction.COSINE,")
    training = sorted(data["training_datasets"] or [])
    lines.append(f"    training_datasets={{{', '.join(repr(t) for t in training)}}},")
    lines.append(")")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------------------


@dataclass
class MTEBRun:
    """Where the results went and the main score (0–1, MTEB's scale) of each task."""

    output_dir: Path
    results_dir: Path
    model_meta: Any
    scores: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def to_markdown(self) -> str:
        lines = [f"MTEB — {self.model_meta.name} @ {self.model_meta.revision} (main score × 100)", ""]
        lines.append("| " + " | ".join(self.scores) + " |")
        lines.append("|" + "|".join(["---"] * len(self.scores)) + "|")
        lines.append("| " + " | ".join(f"{100 * v:.2f}" for v in self.scores.values()) + " |")
        for task, error in self.errors.items():
            lines.append(f"\n- {task}: FAILED — {error}")
        lines.append(f"\nResults: {self.results_dir}")
        return "\n".join(lines) + "\n"


def run_mteb(
    model: str | os.PathLike[str] | SentenceTransformer,
    tasks: str | Sequence[Any] = "sts",
    *,
    output_dir: str | os.PathLike[str] = "mteb_results",
    model_name: str | None = None,
    revision: str | None = None,
    model_meta: Any | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    base_model: str | None = None,
    caption_data: str | None = "card",
    training_datasets: Iterable[str] | None = None,
    device: str | None = None,
    raise_error: bool = True,
    benchmark: str | None = None,
    license: str | None = None,
    reference: str | None = None,
    citation: str | None = None,
    public_training_code: str | None = None,
) -> MTEBRun:
    """Evaluate ``model`` with ``mteb.evaluate`` and write results in the results-repository layout.

    ``model_meta`` overrides the metadata built by :func:`build_model_meta` from ``model_name`` (default: the Hub
    id or ``local/<folder>``), ``revision`` (default: the Hub commit when the model comes from the HF cache, else
    ``no_revision_available``), ``base_model``, ``caption_data`` and ``training_datasets``. ``benchmark`` (an MTEB
    benchmark name such as ``"MTEB(eng, v2)"``) replaces ``tasks`` by that benchmark's task list.

    A model folder with a DALR card (an export, a training output folder) gives the defaults: the model name (the
    Hub id the card was written for, else ``local/dalr-<base model>``), ``base_model`` (``adapted_from``), the
    caption data (with ``caption_data="card"``), ``license``, ``reference`` (the model's Hub page) and
    ``citation`` (DALR's). ``license``, ``reference``, ``citation`` and ``public_training_code`` (a URL) override them.
    """
    import mteb
    from mteb.cache import ResultCache
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    task_objects = list(mteb.get_benchmark(benchmark).tasks) if benchmark else resolve_mteb_tasks(tasks, data_dir)
    is_path = not isinstance(model, SentenceTransformer) and Path(str(model)).exists()
    # ``revision`` picks the Hub revision to download; a local folder is used as it is
    st_model = load_model(model, device=device, revision=None if is_path else revision)
    # a folder with a DALR card: the card names the model, its base, its training data, license and citation
    if is_path:
        card = read_card_metadata(str(model))
    else:  # a model from the Hub (or already loaded): the card it came with
        card = card_metadata_from_text(getattr(st_model, "_model_card_text", None))
    if card is not None:
        logger.info("model metadata from the card of %s: %s", model, card)
    if model_meta is None:
        from_card = card or CardMetadata()
        languages = [_MTEB_LANGUAGES[lang] for lang in from_card.languages if lang in _MTEB_LANGUAGES]
        model_meta = build_model_meta(
            st_model,
            model_name or from_card.model_name() or infer_model_name(model),
            revision or infer_revision(model),
            base_model=base_model or from_card.base_model,
            caption_data=caption_data if caption_data != "card" else (from_card.caption_data if card else "flickr30k"),
            training_datasets=training_datasets,
            license=license or from_card.license or "apache-2.0",
            reference=reference or (f"https://huggingface.co/{from_card.model_id}" if from_card.model_id else None),
            citation=citation or from_card.citation,
            public_training_code=public_training_code,
            languages=languages or ("eng-Latn",),
        )
    encode_kwargs: Any = {"batch_size": batch_size, "show_progress_bar": False}  # mteb's EncodeKwargs (a TypedDict)
    wrapper = SentenceTransformerEncoderWrapper(st_model)
    wrapper.mteb_model_meta = model_meta  # the wrapper's metadata decides the results folder and model_meta.json
    out = Path(output_dir)
    cache = ResultCache(out)
    was_training = st_model.training
    try:
        result = mteb.evaluate(
            wrapper,
            task_objects,
            cache=cache,
            overwrite_strategy="always",
            encode_kwargs=encode_kwargs,
            co2_tracker=False,
            show_progress_bar=False,
            raise_error=raise_error,
        )
    finally:
        st_model.train(was_training)
    results_dir = out / "results" / model_meta.model_name_as_path() / str(model_meta.revision)
    run = MTEBRun(out, results_dir, model_meta)
    for task_result in result.task_results:
        run.scores[task_result.task_name] = float(task_result.get_score())
        run.files.append(results_dir / f"{task_result.task_name}.json")
    for error in result.exceptions or []:
        run.errors[error.task_name] = error.exception
    snippet = out / "model_meta_snippet.py"
    snippet.write_text(model_meta_python(model_meta), encoding="utf-8")
    (out / "dalr_mteb_run.json").write_text(
        json.dumps(
            {
                "model": model_meta.name,
                "revision": model_meta.revision,
                "scores": run.scores,
                "errors": run.errors,
                "results_dir": str(results_dir),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return run
