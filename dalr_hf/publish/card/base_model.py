"""The Hub id of a run's base model, for the card's ``base_model`` metadata.

A base model given as a Hub id is used as it is. One given as ``pypi:<package>`` or as a local folder is a copy of a
Hub model: the folder itself names it, in the usage examples of its ``README.md`` (``SentenceTransformer("org/name")``,
``from_pretrained("org/name")``), in the README's front matter (``model_id`` / ``model_name``), or, as a last resort,
in ``config.json``'s ``_name_or_path``. When nothing names it, the card has no ``base_model`` unless the user gives one
(``base_model_id``: the ``card_base_model`` recipe key, the ``--base-model`` flag of ``dalr-hf export``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from dalr_hf.publish.card.collect import looks_like_hub_id

logger = logging.getLogger(__name__)

_USAGE_ID = re.compile(r"""(?:SentenceTransformer|from_pretrained)\(\s*['"]([A-Za-z0-9][\w.-]*/[\w.-]+)['"]""")


def _front_matter(text: str) -> dict:
    import yaml

    if not text.startswith("---"):
        return {}
    parts = text.split("---", 2)
    if len(parts) < 3:
        return {}
    try:
        meta = yaml.safe_load(parts[1])
    except yaml.YAMLError:
        return {}
    return meta if isinstance(meta, dict) else {}


def hub_id_of_folder(folder: str | os.PathLike[str]) -> str | None:
    """The Hub id a local model folder is a copy of, as the folder's own files name it (None if they do not)."""
    root = Path(folder)
    readme = root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")
        meta = _front_matter(text)
        for key in ("model_id", "model_name"):
            value = meta.get(key)
            if isinstance(value, str) and looks_like_hub_id(value) and "/" in value:
                return value
        match = _USAGE_ID.search(text)
        if match:
            return match.group(1)
    config = root / "config.json"
    if config.is_file():
        try:
            name = json.loads(config.read_text(encoding="utf-8")).get("_name_or_path")
        except (json.JSONDecodeError, AttributeError):
            name = None
        if isinstance(name, str) and "/" in name and looks_like_hub_id(name):
            return name
    return None


def hub_id_of(name: str | None) -> str | None:
    """The Hub id of a model given as a Hub id, ``pypi:<package>`` or a folder (None when nothing names one)."""
    if not name:
        return None
    if name.startswith("pypi:"):
        from dalr_hf.student import resolve_model_path

        try:
            return hub_id_of_folder(resolve_model_path(name))
        except ValueError:
            return None
    if os.path.isdir(name):
        return hub_id_of_folder(name)
    return name if looks_like_hub_id(name) else None


def resolve_base_model_id(name: str | None, base_model_id: str | None = None) -> str | None:
    """The Hub id the card names as ``base_model`` for a base model given as ``name``.

    ``base_model_id`` (given by the user) wins. A Hub id is kept; ``pypi:<package>`` and local folders are resolved
    with :func:`hub_id_of_folder`. Returns None when no Hub id can be found.
    """
    if base_model_id:
        if not looks_like_hub_id(base_model_id):
            raise ValueError(f"base model id {base_model_id!r} is not a Hub model id (expected namespace/name)")
        return base_model_id
    if not name:
        return None
    if name.startswith("pypi:"):
        from dalr_hf.student import resolve_model_path

        try:
            folder = resolve_model_path(name)
        except ValueError as exc:
            logger.warning("base model %s: %s; the card names no base_model", name, exc)
            return None
        found = hub_id_of_folder(folder)
    elif os.path.isdir(name):
        found = hub_id_of_folder(name)
    else:
        return name if looks_like_hub_id(name) else None
    if found is None:
        logger.warning(
            "base model %s does not say which Hub model it is a copy of; give its Hub id (card_base_model / "
            "--base-model) to have base_model in the card's metadata",
            name,
        )
    return found
