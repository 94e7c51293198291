"""Writing outputs whole or not at all: a failed stage never leaves a half-written file or folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

from vae_tf.errors import UserError


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to a temporary sibling of `path` (same suffix), then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty staging folder beside `target`; on success it replaces `target` whole."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}-{uuid.uuid4().hex[:8]}")
    staging.mkdir()  # with the umask's mode (mkdtemp's 0700 kept other users, TF Serving's, out of export/)
    try:
        yield staging
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_model(model, path: Path) -> None:
    """`model.save` to `path` (.keras), whole or not at all, and byte-identical for identical
    weights: Keras stamps the archive with the time (`metadata.json`'s date_saved and the weights
    entry's date) and names each shared object by its address in memory (`config.json`'s
    shared_object_id), which would change dvc.lock and `dvc exp show` on every retrain; the
    stamps go, and the shared objects are numbered in order of appearance."""

    def write(tmp: Path) -> None:
        model.save(tmp)
        with zipfile.ZipFile(tmp) as archive:
            entries = [(info, archive.read(info)) for info in archive.infolist()]
        with zipfile.ZipFile(tmp, "w") as archive:
            for info, data in entries:
                if info.filename == "metadata.json":
                    data = json.dumps({k: v for k, v in json.loads(data).items() if k != "date_saved"}).encode()
                elif info.filename == "config.json":
                    data = json.dumps(_numbered_shared_objects(json.loads(data))).encode()
                archive.writestr(zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0)), data,
                                 info.compress_type)

    atomic_write(path, write)


def _numbered_shared_objects(config: Any, numbers: Optional[dict] = None) -> Any:
    """`config` with each `shared_object_id` (an address) replaced by 1, 2, ... in order of
    first appearance: the loader only matches them within the file."""
    numbers = {} if numbers is None else numbers
    if isinstance(config, dict):
        return {key: numbers.setdefault(value, len(numbers) + 1) if key == "shared_object_id"
                else _numbered_shared_objects(value, numbers) for key, value in config.items()}
    if isinstance(config, list):
        return [_numbered_shared_objects(value, numbers) for value in config]
    return config


def json_text(data: Any, where: str) -> str:
    """`data` as indented JSON. NaN and infinities are not JSON: a number that is not finite
    raises `UserError` naming its key (`where`: the file it was meant for), so nothing is written."""

    def leaves(value, key):
        if isinstance(value, dict):
            for name, item in value.items():
                yield from leaves(item, f"{key}.{name}" if key else str(name))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                yield from leaves(item, f"{key}[{i}]")
        else:
            yield key, value

    bad = [f"{key} = {value}" for key, value in leaves(data, "")
           if isinstance(value, float) and not math.isfinite(value)]
    if bad:
        raise UserError(f"{where}: not written: {', '.join(bad)} is not a finite number (the model's estimates are "
                        "not numbers; look at its training curves and the settings)")
    return json.dumps(data, indent=2) + "\n"
