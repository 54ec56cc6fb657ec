"""Reading a built materials folder without torch: the participant app and the server CLI need only this.

``load_manifest`` checks every asset against its recorded sha256; ``load_study`` registers the study, its assets
and its items (with the answer key, which then lives only in the database) in one go.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import Engine

from stylex.errors import UserError

MANIFEST_FORMAT = "stylex-study-materials"
MANIFEST_VERSION = 1
ASSET_DB_KEYS = ("asset_id", "sha256", "relpath", "method", "domain", "attr_rank", "role")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_file(path: str | Path) -> Path:
    """`path` itself, or `path`/manifest.json when it is a folder."""
    path = Path(path)
    return path / "manifest.json" if path.is_dir() else path


def load_manifest(path: str | Path) -> dict:
    """The manifest at `path` (the file or its folder), after checking every asset exists with its sha256."""
    path = manifest_file(path)
    if not path.is_file():
        raise UserError(f"no study manifest at {path}; build the materials first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); rebuild the materials") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path} is not a study-materials manifest")
    try:
        _check_manifest(manifest, path)
    except (KeyError, TypeError, AttributeError) as err:
        raise UserError(f"{path} is not a valid study-materials manifest (bad or missing {err}); "
                        "rebuild the materials") from None
    return manifest


def _check_manifest(manifest: dict, path: Path) -> None:
    root = path.parent
    for asset in manifest["assets"]:
        file = root / asset["relpath"]
        if not file.is_file():
            raise UserError(f"study asset {asset['asset_id']} is missing ({file}); rebuild the materials")
        if sha256_hex(file.read_bytes()) != asset["sha256"]:
            raise UserError(f"study asset {file} does not match its sha256 in {path} (changed or corrupted); "
                            "rebuild the materials")
    known = {asset["asset_id"] for asset in manifest["assets"]}
    for item in manifest["items"]:
        missing = [a for a in item["assets"] if a not in known]
        if missing:
            raise UserError(f"item {item['item_id']} refers to unknown asset(s) {', '.join(missing)} in {path}")


def asset_paths(path: str | Path) -> dict[str, Path]:
    """asset_id -> absolute file path, from a verified manifest."""
    file = manifest_file(path)
    manifest = load_manifest(file)
    return {asset["asset_id"]: (file.parent / asset["relpath"]).resolve() for asset in manifest["assets"]}


def load_study(engine: Engine, manifest_path: str | Path, answer_key: dict[str, str] | str | Path,
               study_id: str | None = None, name: str | None = None) -> str:
    """Register the study of a materials folder (study row, assets, items with the answer key); returns its id.

    `answer_key` is the {item_id: "A"|"B"} dict or the path of answer_key.json. Idempotent: re-running with the
    same manifest changes nothing; a different manifest under the same study id is refused (see db.add_study)."""
    from studies import db

    file = manifest_file(manifest_path)
    manifest = load_manifest(file)
    if not isinstance(answer_key, dict):
        key_path = Path(answer_key)
        if not key_path.is_file():
            raise UserError(f"no answer key at {key_path}")
        answer_key = json.loads(key_path.read_text())
    study_id = study_id or manifest.get("study_id")
    if not study_id:
        raise UserError(f"{file} names no study id; pass one")
    db.create_schema(engine)
    assets = [{k: asset[k] for k in ASSET_DB_KEYS if asset.get(k) is not None} for asset in manifest["assets"]]
    db.add_study(engine, study_id, name or study_id, sha256_hex(file.read_bytes()), assets)
    db.add_items(engine, study_id, manifest["items"], answer_key)
    return study_id


__all__ = ["MANIFEST_FORMAT", "MANIFEST_VERSION", "asset_paths", "load_manifest", "load_study", "sha256_hex"]
