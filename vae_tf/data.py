"""Data sources, preprocessing and the prepared-data files.

A source yields images as integer grey levels in [0, n_levels) or as intensities in [0, 1].
Preprocessing turns them into float32 arrays of one of three representations:

- `levels`: integer grey levels (for a Categorical likelihood over n_levels values);
- `binary`: {0, 1} (Bernoulli); with dynamic binarization the training split keeps its
  intensities in [0, 1] and the model draws x ~ Bernoulli(intensity) at every step;
- `continuous`: intensities in [0, 1] (Gaussian).

Images keep their shape: `Meta.image_shape` is (height, width, channels) (a grey image has one
channel), or (D,) for a source of rows that are not images, and the prepared files hold arrays
(N, *image_shape). In memory (`Prepared`) an example is a row of its D = H * W * C values in
row-major order, which is what every density is over; networks that see images (`conv`,
`resnet`) view the row as the image.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import socket
import zipfile
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np

from vae_tf.config import DataParams
from vae_tf.errors import DataError
from vae_tf.files import staged_directory

SPLITS = ("train", "val", "test")
# scikit-learn's digits, split by index as in the reference VAE for this data set.
DIGITS_SPLIT = {"train": slice(0, 1000), "val": slice(1000, 1350), "test": slice(1350, 1797)}
DIGITS_LEVELS = 17
MAX_LEVELS = 65536  # 16-bit images


@dataclass(frozen=True)
class Source:
    """Raw images per split: integer levels in [0, n_levels), or floats in [0, 1] (n_levels None);
    the test images' class labels where the data set has them (for pictures only)."""

    splits: dict[str, np.ndarray]
    n_levels: Optional[int]
    image_shape: tuple[int, ...]
    test_labels: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Meta:
    source: str
    preprocessing: str
    representation: str  # levels | binary | continuous
    n_levels: Optional[int]  # values per pixel for levels/binary, None for continuous
    image_shape: tuple[int, ...]  # (H, W, C) for images, (D,) for rows
    dimension: int
    dynamic_binarization: bool
    sizes: dict[str, int]


@dataclass(frozen=True)
class Prepared:
    """The splits as rows (N, D) of float32, D = prod(meta.image_shape)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    meta: Meta
    test_labels: Optional[np.ndarray] = None  # integer class of each test image, where the source has them


# --- sources ---------------------------------------------------------------------------


def load_source(params: DataParams) -> Source:
    if params.source == "digits":
        return _digits()
    if params.source == "idx":
        return _idx(Path(params.path), params.validation_size)
    if params.source == "npz":
        return _npz(Path(params.path), params.validation_size)
    return _tfds(params.source.removeprefix("tfds:"), params.tfds_data_dir, params.validation_size)


def _digits() -> Source:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.int64)  # (1797, 8, 8), levels 0..16
    return Source({split: images[index] for split, index in DIGITS_SPLIT.items()}, DIGITS_LEVELS, (8, 8, 1),
                  digits.target[DIGITS_SPLIT["test"]])


def _check_download_reachable(name: str, host: str = "storage.googleapis.com") -> None:
    """Fail in seconds, not minutes of retries, when TFDS cannot download `name`."""
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as err:
        raise DataError(
            f"data.source: TFDS data set {name!r} is not prepared locally and cannot be downloaded "
            f"({host} is unreachable: {err}). On a machine with network run "
            f"`python -m tensorflow_datasets.scripts.download_and_prepare --datasets={name}` "
            f"(or `tfds build {name}`), copy its data folder here and set data.tfds_data_dir to it."
        ) from None


def _tfds(name: str, data_dir: Optional[str], validation_size: int) -> Source:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"data.source: unknown TFDS data set {name!r} (see `tfds.list_builders()`)") from None
    except (AssertionError, ValueError) as err:  # a version or config it does not have; a name it cannot parse
        if str(err).startswith("Parsing builder name string"):
            raise DataError(f"data.source: tfds:{name} is not a TFDS data set's name (name, name/config, "
                            "name:version or name/config:version, e.g. tfds:mnist:3.0.1)") from None
        reason = " ".join(str(err).split(chr(34) + ": ", 1)[-1].split())
        raise DataError(f"data.source: TFDS data set {name!r}: {reason}") from None
    if not builder.is_prepared():
        _check_download_reachable(name)
    builder.download_and_prepare()
    if "image" not in builder.info.features:
        raise DataError(f"data.source: TFDS data set {name!r} has no 'image' feature")
    image = builder.info.features["image"]
    if None in image.shape:
        raise DataError(f"data.source: TFDS data set {name!r} has images of varying size (shape {image.shape}), "
                        "which one model cannot take; resize them to one size and give them as an npz source "
                        "(data.source: npz, data.path: the file)")
    if not np.issubdtype(image.np_dtype, np.integer):
        raise DataError(f"data.source: TFDS data set {name!r} has images of dtype {image.np_dtype.__name__}; "
                        "give them as an npz source (data.source: npz, data.path: the file; integer grey levels, "
                        "or intensities in [0, 1])")

    def images(split: str) -> np.ndarray:
        batches = builder.as_dataset(split=split).map(lambda example: example["image"]).batch(4096)
        return np.concatenate(list(tfds.as_numpy(batches)))

    try:
        splits = {"train": images("train"), "test": images("test")}
    except (KeyError, ValueError) as err:
        raise DataError(f"data.source: TFDS data set {name!r} needs 'train' and 'test' splits ({err})") from None
    if "validation" in builder.info.splits:
        splits["val"] = images("validation")
    else:
        splits = _hold_out_validation(splits, validation_size, f"tfds:{name}")
    binary = max(split.max() for split in splits.values()) <= 1  # e.g. binarized_mnist
    levels = 2 if binary else int(np.iinfo(image.np_dtype).max) + 1  # 256 for 8-bit images, 65536 for 16-bit
    source = _checked(splits, levels, f"tfds:{name}")
    if "label" not in builder.info.features:
        return source
    labels = builder.as_dataset(split="test").map(lambda example: example["label"]).batch(4096)
    return replace(source, test_labels=np.concatenate(list(tfds.as_numpy(labels))))


def _npz(path: Path, validation_size: int) -> Source:
    """A user's arrays: keys `train` and `test` (and `val`, else held out of `train`), and
    optionally `n_levels`, a scalar."""
    where = f"data.path {path}"
    _regular_file(path, where)
    with open(path, "rb") as file:
        start = file.read(6)
    if not start.startswith((b"PK", b"\x93NUMPY")):
        raise DataError(f"{where}: not an .npz archive: it starts with {start!r}, where an .npz archive (a zip "
                        "file) starts with b'PK'; save one with numpy.savez(path, train=..., test=...)")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{where}: holds a single array (a .npy file), not an .npz archive of named arrays "
                            "(train, test, optional val); save it with numpy.savez(path, train=..., test=...)")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DataError(f"{where}: not a readable .npz archive ({err})") from None
    missing = [key for key in ("train", "test") if key not in arrays]
    if missing:
        raise DataError(f"{where}: missing array(s) {missing}; found {sorted(arrays)} (needs train, test, optional val)")
    splits = {key: arrays[key] for key in SPLITS if key in arrays}
    if "val" not in splits:
        splits = _hold_out_validation(splits, validation_size, where)
    n_levels = None
    if all(np.issubdtype(array.dtype, np.integer) for array in splits.values()):
        if "n_levels" in arrays:
            given = arrays["n_levels"]
            if given.ndim != 0 or not np.issubdtype(given.dtype, np.integer):
                raise DataError(f"{where}: n_levels must be one integer, got an array of shape {given.shape} "
                                f"and dtype {given.dtype}")
            n_levels = int(given)
        else:
            n_levels = int(max((a.max() for a in splits.values() if a.size), default=0)) + 1
    return _checked(splits, n_levels, where)


# IDX (LeCun's MNIST format): 0, 0, a type code, the number of dimensions; then each dimension
# as a big-endian uint32; then the values, big-endian, row-major.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
IDX_LABELS = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file holds (gzipped or not, by its `.gz` suffix); a file that is not one,
    or holds more or fewer values than its header says, is refused naming it."""
    try:
        raw = (gzip.decompress if path.suffix == ".gz" else bytes)(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not readable ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (its first bytes are not 0, 0, a type code)")
    dtype, ndim = np.dtype(IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = header + dtype.itemsize * math.prod(shape)  # Python's integers: no overflow (65536^4)
    if len(raw) != expected:
        raise DataError(f"{path}: {'truncated' if len(raw) < expected else 'longer than its header says'}: "
                        f"{len(raw)} bytes where shape {shape} of {dtype.name} needs {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _regular_file(path: Path, where: str) -> None:
    """Refuses a path that is missing or not a regular file (a FIFO would block the read forever)."""
    if not path.exists():
        raise DataError(f"{where}: file not found")
    if not path.is_file():
        kind = "a folder" if path.is_dir() else "a FIFO" if path.is_fifo() else "not a regular file"
        raise DataError(f"{where}: {path} is {kind}, not a file of data")


def _idx_file(folder: Path, name: str, required: bool) -> Optional[Path]:
    found = [candidate for candidate in (folder / name, folder / f"{name}.gz") if candidate.exists()]
    for candidate in found:
        _regular_file(candidate, f"data.path {folder}")
    if len(found) == 2:
        raise DataError(f"data.path {folder}: both {name} and {name}.gz are there; keep the one to read")
    if found:
        return found[0]
    if required:
        raise DataError(f"data.path {folder}: {name} (or {name}.gz) not found")
    return None


def _idx(folder: Path, validation_size: int) -> Source:
    """The standard MNIST-style files of `folder` (Fashion-MNIST, MNIST, KMNIST): training and test
    images, and their labels where present (a label file must match its images' count). The last
    `validation_size` training images are held out for validation."""
    where = f"data.path {folder}"
    if not folder.is_dir():
        raise DataError(f"{where}: no such folder")
    paths, splits = {}, {}
    for split, name in IDX_FILES.items():  # each read as it is found: a broken file is named before a missing one
        paths[split] = _idx_file(folder, name, required=True)
        splits[split] = read_idx(paths[split])
    labels = {}
    for split, name in IDX_LABELS.items():
        path = _idx_file(folder, name, required=False)
        if path is not None:
            labels[split] = read_idx(path)
            if labels[split].shape != (len(splits[split]),):
                raise DataError(f"{path}: {labels[split].shape} labels for the {len(splits[split])} images of "
                                f"{paths[split].name}")
    n_levels = None  # floats: intensities in [0, 1]
    if all(np.issubdtype(array.dtype, np.integer) for array in splits.values()):
        # unsigned bytes: the format's 256 levels; wider integers (int16, int32): the levels the
        # images hold, as for an npz file without n_levels
        n_levels = 256 if splits["train"].dtype == np.uint8 else int(max(a.max() for a in splits.values())) + 1
    source = _checked(_hold_out_validation(splits, validation_size, where), n_levels, where)
    return replace(source, test_labels=labels.get("test"))


def _hold_out_validation(splits: dict[str, np.ndarray], size: int, where: str) -> dict[str, np.ndarray]:
    train = splits["train"]
    if size >= len(train):
        raise DataError(
            f"data.validation_size: {size} must be smaller than the {len(train)} training examples of {where}"
        )
    return {"train": train[:-size], "val": train[-size:], "test": splits["test"]}


def _checked(splits: dict[str, np.ndarray], n_levels: Optional[int], where: str) -> Source:
    """Check shapes and value ranges; an (N, H, W) array is one channel."""
    shapes = {key: array.shape[1:] for key, array in splits.items()}
    for key, array in splits.items():
        if array.ndim not in (2, 3, 4) or array.size == 0:
            raise DataError(f"{where}: {key} must be a non-empty (N, D), (N, H, W) or (N, H, W, C) array, got shape "
                            f"{array.shape}")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise DataError(f"{where}: {key} must hold numbers, got dtype {array.dtype}")
    if len(set(shapes.values())) != 1:
        raise DataError(f"{where}: splits have different image shapes {shapes}")
    for key, array in splits.items():
        if n_levels is None:
            if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
                raise DataError(f"{where}: {key} has float values outside [0, 1] (or NaN); scale intensities to [0, 1]")
        elif array.min() < 0 or array.max() >= n_levels:
            raise DataError(f"{where}: {key} has levels outside [0, {n_levels - 1}]")
    if n_levels is not None and not 2 <= n_levels <= MAX_LEVELS:
        raise DataError(f"{where}: integer images need 2 to {MAX_LEVELS} grey levels (16-bit at most), got {n_levels}; "
                        "give intensities as floats in [0, 1] instead")
    image_shape = (*shapes["train"], 1) if len(shapes["train"]) == 2 else shapes["train"]
    return Source(splits, n_levels, tuple(int(d) for d in image_shape))


# --- preprocessing ---------------------------------------------------------------------


def preprocess(source: Source, params: DataParams, seed: int, name: str) -> Prepared:
    """Flatten to (N, D) float32 and convert to the representation `params.preprocessing` asks for."""
    method = params.preprocessing
    if method == "levels" and source.n_levels is None:
        raise DataError(f"data.preprocessing: 'levels' needs integer grey levels, but {name} holds intensities in [0, 1]")
    rng = np.random.default_rng(seed)
    out = {}
    for split, images in source.splits.items():
        flat = images.reshape(len(images), -1)
        intensity = flat / (source.n_levels - 1) if source.n_levels is not None else flat
        if method == "levels":
            out[split] = flat
        elif method == "binarize":
            out[split] = intensity > params.binarize_threshold
        elif method == "dynamic_binarize" and split == "train":
            out[split] = intensity
        elif method == "dynamic_binarize":
            out[split] = rng.random(intensity.shape) < intensity  # one fixed binarization for val/test
        else:
            out[split] = intensity
    representation = {"levels": "levels", "scale": "continuous"}.get(method, "binary")
    n_levels = {"levels": source.n_levels, "continuous": None, "binary": 2}[representation]
    meta = Meta(
        source=name,
        preprocessing=method,
        representation=representation,
        n_levels=n_levels,
        image_shape=source.image_shape,
        dimension=int(out["train"].shape[1]),
        dynamic_binarization=method == "dynamic_binarize",
        sizes={split: int(len(array)) for split, array in out.items()},
    )
    arrays = {split: out[split].astype(np.float32) for split in SPLITS}
    return Prepared(meta=meta, test_labels=source.test_labels, **arrays)


def prepare(params: DataParams, seed: int) -> Prepared:
    return preprocess(load_source(params), params, seed, params.name)


# --- files -----------------------------------------------------------------------------


def save_prepared(prepared: Prepared, directory: Path) -> None:
    """Write `{train,val,test}.npz` (arrays (N, *image_shape)) and `meta.json` into `directory`,
    replacing it whole."""
    with staged_directory(directory) as staging:
        for split in SPLITS:
            labels = {"labels": prepared.test_labels} if split == "test" and prepared.test_labels is not None else {}
            images = getattr(prepared, split).reshape(-1, *prepared.meta.image_shape)
            np.savez_compressed(staging / f"{split}.npz", x=images, **labels)
        (staging / "meta.json").write_text(json.dumps(asdict(prepared.meta), indent=2) + "\n")


@contextlib.contextmanager
def _reading_prepared(directory: Path):
    """A missing or unreadable file of the prepared folder `directory` as a `DataError`."""
    try:
        yield
    except FileNotFoundError as err:
        raise DataError(f"prepared data missing ({err.filename}); run `dvc repro prepare` first") from None
    except (KeyError, TypeError, ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{directory}: prepared data is corrupt ({err}); run `dvc repro prepare` again") from None


def load_meta(directory: Path) -> Meta:
    """The `meta.json` of the prepared folder `directory` (what resolve checks the runs against)."""
    with _reading_prepared(directory):
        raw = json.loads((Path(directory) / "meta.json").read_text())
        return Meta(**{**raw, "image_shape": tuple(raw["image_shape"])})


def load_prepared(directory: Path) -> Prepared:
    directory = Path(directory)
    meta = load_meta(directory)
    arrays, test_labels = {}, None
    with _reading_prepared(directory):
        for split in SPLITS:
            with np.load(directory / f"{split}.npz") as archive:
                arrays[split] = archive["x"]
                test_labels = archive["labels"] if "labels" in archive.files else test_labels
    for split, array in arrays.items():
        if array.shape[1:] != meta.image_shape:
            raise DataError(f"{directory}/{split}.npz: expected shape (N, {', '.join(map(str, meta.image_shape))}) "
                            f"as meta.json says, got {array.shape}")
        arrays[split] = array.reshape(len(array), meta.dimension)
    return Prepared(meta=meta, test_labels=test_labels, **arrays)
