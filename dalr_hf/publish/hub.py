"""Publishing an exported student on the Hugging Face Hub with ``huggingface_hub``.

:func:`push_to_hub` exports the model (see :mod:`dalr_hf.publish.export`) into a staging folder with a card whose usage
snippet loads the target repository, then creates the repository (``HfApi.create_repo``, ``exist_ok``) and uploads
that folder as one commit (``HfApi.upload_folder``). With ``dry_run_dir`` it writes the staging folder there and
stops: that folder is byte for byte what would be uploaded. The endpoint is huggingface_hub's own setting
(``HF_ENDPOINT``) unless ``endpoint`` is given; the token is ``token``, else ``HF_TOKEN`` / the saved login.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload DALR sentence encoder (dalr_hf)"


class HubPushError(RuntimeError):
    """The upload cannot be done as asked (offline mode, a malformed repository id)."""


@dataclass
class PushResult:
    """What was (or, in a dry run, would have been) uploaded."""

    repo_id: str
    folder: str | None
    files: list[str]
    private: bool | None
    dry_run: bool
    repo_url: str | None = None
    commit_url: str | None = None
    commit_oid: str | None = None
    card_rendered: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_repo_id(repo_id: str | None) -> str:
    """``repo_id`` if it is a full ``namespace/name`` Hub id; raises :class:`HubPushError` otherwise."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not repo_id or "/" not in repo_id:
        raise HubPushError(
            f"repository id {repo_id!r}: give the full id, namespace/name (e.g. my-org/dalr-bert-base); "
            "for the training script set hub_model_id"
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise HubPushError(f"repository id {repo_id!r} is not valid: {exc}") from exc
    return repo_id


def check_can_push(repo_id: str | None) -> str:
    """Fail early (before training) when a push could not happen: a malformed id, or offline mode."""
    checked = check_repo_id(repo_id)
    _check_online()
    return checked


def _check_online() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise HubPushError(
            "huggingface_hub is in offline mode (HF_HUB_OFFLINE=1 or TRANSFORMERS_OFFLINE=1), so nothing can be "
            "uploaded; unset it, or use a dry run to write the folder that would be uploaded"
        )


def upload_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    revision: str | None = None,
) -> PushResult:
    """Create ``repo_id`` if needed and upload every file of ``folder`` to it in one commit."""
    from huggingface_hub import HfApi

    from dalr_hf.publish.export import list_files

    check_repo_id(repo_id)
    _check_online()
    files = list_files(folder)
    if not files:
        raise HubPushError(f"{str(folder)!r} is empty: nothing to upload")
    api = HfApi(endpoint=endpoint, token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        revision=revision,
        commit_message=commit_message,
    )
    logger.info("uploaded %d files to %s: %s", len(files), repo_id, commit.commit_url)
    return PushResult(
        repo_id=repo_id,
        folder=str(folder),
        files=files,
        private=private,
        dry_run=False,
        repo_url=str(repo_url),
        commit_url=commit.commit_url,
        commit_oid=commit.oid,
    )


def push_to_hub(
    model_or_path: Any,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    dry_run_dir: str | os.PathLike[str] | None = None,
    card_data: Mapping[str, Any] | None = None,
    model_card: bool = True,
    eval_results: Any = None,
    base_model_id: str | None = None,
    checkpoint: str = "auto",
    commit_message: str | None = None,
    revision: str | None = None,
    overwrite: bool = False,
) -> PushResult:
    """Export a trained student (in memory, or a training output / checkpoint / model folder) and upload it.

    The uploaded folder is :func:`dalr_hf.publish.export.export_model`'s, with the card's usage snippet loading
    ``repo_id``. ``dry_run_dir`` writes that folder there instead of uploading (``overwrite`` replaces an earlier
    dry run). ``private`` applies when the repository is created; the Hub ignores it for an existing one.
    """
    from dalr_hf.publish.export import export_model

    check_repo_id(repo_id)
    export_kwargs = {
        "card_data": card_data,
        "model_card": model_card,
        "model_id": repo_id,
        "eval_results": eval_results,
        "base_model_id": base_model_id,
        "checkpoint": checkpoint,
    }
    if dry_run_dir is not None:
        exported = export_model(model_or_path, dry_run_dir, overwrite=overwrite, **export_kwargs)
        result = PushResult(repo_id, exported.path, exported.files, private, dry_run=True)
    else:
        _check_online()
        with tempfile.TemporaryDirectory(prefix="dalr_hf_push_") as tmp:
            staging = Path(tmp) / repo_id.split("/")[-1]
            exported = export_model(model_or_path, staging, **export_kwargs)
            result = upload_folder(
                staging,
                repo_id,
                private=private,
                token=token,
                endpoint=endpoint,
                commit_message=commit_message or DEFAULT_COMMIT_MESSAGE,
                revision=revision,
            )
        result.folder = None  # the staging folder is gone
    result.card_rendered = exported.card_rendered
    return result


def publish_after_training(
    trainer: Any,
    export_dir: str | os.PathLike[str],
    *,
    push_to_hub: bool = False,
    repo_id: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    **export_options: Any,
) -> dict[str, Any]:
    """The training script's last step: the card and the export (:func:`dalr_hf.publish.export.export_after_training`,
    which takes ``export_options``: ``model_card``, ``card_inputs``, ``eval_results``; the card names ``repo_id``),
    then, with ``push_to_hub``, one upload of the exported folder to ``repo_id``. Returns a JSON-able summary."""
    from dalr_hf.publish.export import export_after_training

    result = export_after_training(trainer, export_dir, model_id=repo_id, **export_options)
    summary: dict[str, Any] = {
        "export_dir": result.path,
        "files": result.files,
        "card_rendered": result.card_rendered,
        "merged_lora": result.merged_lora,
    }
    if push_to_hub:
        try:
            pushed = upload_folder(result.path, check_repo_id(repo_id), private=private, token=token)
        except Exception:
            logger.error(
                "training and export finished, but the upload to %s failed; retry with: dalr-hf push %s --repo-id %s",
                repo_id,
                trainer.args.output_dir,
                repo_id,
            )
            raise
        summary["hub"] = {"repo_id": pushed.repo_id, "commit_url": pushed.commit_url, "private": private}
    return summary
