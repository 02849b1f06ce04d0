"""Will a model fit? Count its parameters from the files' headers (nothing is loaded) and compare
the memory they need in the chosen dtype with what the device has free, so that a model too large
for the machine fails at launch with a clear message instead of swapping or being killed."""

from __future__ import annotations

from pathlib import Path

from swarm.errors import BackendError

_HEADROOM = 1.2  # activations, KV cache and the framework's own buffers


def count_parameters(location: str, gguf_file: str | None = None) -> int | None:
    """Parameters in a model directory's safetensors files or in a GGUF file; None when unknown."""
    path = Path(location)
    if gguf_file:
        from gguf import GGUFReader

        return sum(int(t.n_elements) for t in GGUFReader(path / gguf_file).tensors)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    from safetensors import safe_open

    total = 0
    for file in files:
        with safe_open(file, framework="pt") as f:
            for name in f.keys():
                shape = f.get_slice(name).get_shape()
                n = 1
                for d in shape:
                    n *= d
                total += n
    return total


def free_bytes(device: str) -> int:
    if device == "cuda":
        import torch

        return int(torch.cuda.mem_get_info()[0])
    import psutil

    return int(psutil.virtual_memory().available)


def ensure_fits(parameters: int, bytes_per_parameter: int, available: int, device: str, what: str) -> None:
    needed = parameters * bytes_per_parameter * _HEADROOM
    if needed > available:
        gib = 1024**3
        raise BackendError(
            f"model {what!r} needs about {needed / gib:.1f} GiB on {device} ({parameters / 1e6:,.0f}M parameters at "
            f"{bytes_per_parameter} bytes each), but only {available / gib:.1f} GiB is free; pick a smaller model or dtype"
        )
