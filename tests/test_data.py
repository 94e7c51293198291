import json
import os
import socket

import numpy as np
import pytest

from vae_tf.config import DataParams
from vae_tf.data import load_prepared, prepare, save_prepared
from vae_tf.errors import DataError, UserError
from vae_tf.files import json_text


def test_digits_split_matches_the_reference(digits):
    assert {s: len(getattr(digits, s)) for s in ("train", "val", "test")} == {"train": 1000, "val": 350, "test": 447}
    assert digits.meta.n_levels == 17 and digits.meta.dimension == 64 and digits.meta.image_shape == (8, 8, 1)
    assert set(np.unique(digits.train)) <= set(range(17)) and digits.train.max() == 16
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(digits.test[0], load_digits().images[1350].ravel())


def test_preprocessing_representations():
    binary = prepare(DataParams(preprocessing="binarize", binarize_threshold=0.5), seed=0)
    assert binary.meta.representation == "binary" and set(np.unique(binary.train)) == {0.0, 1.0}
    scaled = prepare(DataParams(preprocessing="scale"), seed=0)
    assert scaled.meta.representation == "continuous" and scaled.train.max() == 1.0 and scaled.meta.n_levels is None
    dynamic = prepare(DataParams(preprocessing="dynamic_binarize"), seed=0)
    assert dynamic.meta.dynamic_binarization
    np.testing.assert_allclose(dynamic.train, scaled.train)  # intensities, binarized at each step
    assert set(np.unique(dynamic.test)) == {0.0, 1.0}
    # one fixed binarization of val/test, Bernoulli(intensity): its mean matches the intensities
    assert abs(dynamic.test.mean() - scaled.test.mean()) < 0.01


def test_prepare_is_deterministic_for_a_seed():
    a, b = (prepare(DataParams(preprocessing="dynamic_binarize"), seed=3) for _ in range(2))
    np.testing.assert_array_equal(a.test, b.test)
    c = prepare(DataParams(preprocessing="dynamic_binarize"), seed=4)
    assert not np.array_equal(a.test, c.test)


def test_save_and_load_round_trip(tmp_path, digits):
    save_prepared(digits, tmp_path / "prepared")
    loaded = load_prepared(tmp_path / "prepared")
    assert loaded.meta == digits.meta
    np.testing.assert_array_equal(loaded.val, digits.val)
    np.testing.assert_array_equal(loaded.test_labels, digits.test_labels)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]  # no staging left behind
    with np.load(tmp_path / "prepared" / "test.npz") as archive:  # the files keep the images' shape
        np.testing.assert_array_equal(archive["x"], digits.test.reshape(-1, 8, 8, 1))


def test_colour_images_keep_their_channels(tmp_path, rng):
    """An (N, H, W, 3) source: image shape (H, W, 3), rows in row-major (H, W, C) order."""
    train, test = rng.integers(0, 256, (6, 5, 4, 3)), rng.integers(0, 256, (2, 5, 4, 3))
    np.savez(tmp_path / "colour.npz", train=train, test=test, n_levels=256)
    prepared = prepare(DataParams(source="npz", path=str(tmp_path / "colour.npz"), validation_size=2), seed=0)
    assert prepared.meta.image_shape == (5, 4, 3) and prepared.meta.dimension == 60
    np.testing.assert_array_equal(prepared.test[1].reshape(5, 4, 3), test[1])
    save_prepared(prepared, tmp_path / "prepared")
    np.testing.assert_array_equal(load_prepared(tmp_path / "prepared").train, prepared.train)


def test_prepared_files_of_another_shape_than_meta_says(tmp_path, digits):
    save_prepared(digits, tmp_path / "prepared")
    np.savez_compressed(tmp_path / "prepared" / "val.npz", x=digits.val)  # rows, not (N, 8, 8, 1)
    with pytest.raises(DataError, match=r"val.npz: expected shape \(N, 8, 8, 1\) as meta.json says"):
        load_prepared(tmp_path / "prepared")


def test_a_damaged_prepared_file_is_one_line_saying_what_to_run(tmp_path, digits):
    """A byte flipped inside train.npz's deflate stream: zlib.error, a traceback in train, before."""
    save_prepared(digits, tmp_path / "prepared")
    damaged = bytearray((tmp_path / "prepared" / "train.npz").read_bytes())
    damaged[200] ^= 0xFF
    (tmp_path / "prepared" / "train.npz").write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=r"prepared data is corrupt \(.*\); run `dvc repro prepare` again"):
        load_prepared(tmp_path / "prepared")


def test_digits_test_labels_are_scikit_learns_and_match_their_images(digits):
    from sklearn.datasets import load_digits

    source = load_digits()
    np.testing.assert_array_equal(digits.test_labels, source.target[1350:])
    np.testing.assert_array_equal(digits.test, source.images[1350:].reshape(-1, 64))


def test_load_prepared_missing_says_what_to_run(tmp_path):
    with pytest.raises(DataError, match="dvc repro prepare"):
        load_prepared(tmp_path)


def npz_source(tmp_path, **arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return DataParams(source="npz", path=str(path), preprocessing="scale", validation_size=2)


def test_npz_source_with_float_images(tmp_path, rng):
    params = npz_source(tmp_path, train=rng.random((10, 4, 4)), test=rng.random((3, 4, 4)))
    prepared = prepare(params, seed=0)
    assert prepared.meta.sizes == {"train": 8, "val": 2, "test": 3}
    assert prepared.meta.image_shape == (4, 4, 1) and prepared.meta.dimension == 16


def test_npz_integer_levels(tmp_path, rng):
    path = tmp_path / "levels.npz"
    np.savez(path, train=rng.integers(0, 4, (10, 3, 3, 1)), val=rng.integers(0, 4, (2, 3, 3, 1)),
             test=rng.integers(0, 4, (2, 3, 3, 1)), n_levels=4)
    prepared = prepare(DataParams(source="npz", path=str(path)), seed=0)
    assert prepared.meta.n_levels == 4 and prepared.meta.image_shape == (3, 3, 1)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"train": np.zeros((4, 2, 2))}, r"missing array\(s\) \['test'\]"),
        ({"train": np.zeros((4, 2, 2)), "test": np.zeros((4, 3, 3))}, "different image shapes"),
        ({"train": np.full((4, 2, 2), 2.0), "test": np.zeros((4, 2, 2))}, r"outside \[0, 1\]"),
        ({"train": np.full((4, 2, 2), np.nan), "test": np.zeros((4, 2, 2))}, "NaN"),
        ({"train": np.zeros((4,)), "test": np.zeros((4,))}, "must be a non-empty"),
        # images of no pixels: a traceback from numpy's min(), before
        ({"train": np.zeros((4, 8, 8, 0)), "test": np.zeros((4, 8, 8, 0))},
         r"train must be a non-empty .* got shape \(2, 8, 8, 0\)"),
        ({"train": np.zeros((4, 0, 8), int), "test": np.zeros((4, 0, 8), int)}, "got shape"),
        ({"train": np.zeros((2, 2, 2)), "test": np.zeros((4, 2, 2))}, "validation_size"),
        ({"train": np.zeros((3, 4)), "val": np.zeros((0, 4)), "test": np.zeros((2, 4))}, "val must be a non-empty"),
        ({"train": np.zeros((0, 4), int), "val": np.zeros((0, 4), int), "test": np.zeros((0, 4), int)},
         "train must be a non-empty"),
        ({"train": np.full((3, 4), 2**40), "val": np.zeros((2, 4), int), "test": np.zeros((2, 4), int)},
         r"need 2 to 65536 grey levels \(16-bit at most\), got 1099511627777"),
        ({"train": np.ones((3, 4), int), "val": np.ones((2, 4), int), "test": np.ones((2, 4), int),
          "n_levels": np.array(10**12)}, "need 2 to 65536 grey levels"),
        ({"train": np.ones((3, 4), int), "val": np.ones((2, 4), int), "test": np.ones((2, 4), int),
          "n_levels": np.array([3, 4])}, r"n_levels must be one integer, got an array of shape \(2,\)"),
    ],
)
def test_bad_npz_gets_a_clear_error(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        prepare(npz_source(tmp_path, **arrays), seed=0)


def test_corrupt_or_missing_npz(tmp_path, rng):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    with pytest.raises(DataError, match="not a readable .npz"):
        prepare(DataParams(source="npz", path=str(bad)), seed=0)
    np.save(tmp_path / "single.npy", np.zeros((10, 4)))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")  # a .npy under an .npz name
    with pytest.raises(DataError, match=r"holds a single array \(a .npy file\), not an .npz archive"):
        prepare(DataParams(source="npz", path=str(tmp_path / "single.npz")), seed=0)
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, train=rng.integers(0, 4, (100, 16)), test=rng.integers(0, 4, (10, 16)))
    for offset in (100, 300):  # inside train's deflate stream: zlib fails before the CRC check does
        damaged = bytearray(compressed.read_bytes())
        damaged[offset] ^= 0xFF
        (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
        with pytest.raises(DataError, match="not a readable .npz archive"):
            prepare(DataParams(source="npz", path=str(tmp_path / "damaged.npz"), validation_size=5), seed=0)
    with pytest.raises(DataError, match="file not found"):
        prepare(DataParams(source="npz", path=str(tmp_path / "none.npz")), seed=0)


def test_a_text_file_or_a_fifo_as_data_is_named_for_what_it_is(tmp_path, rng):
    """A text file was called "pickled (object) data" (numpy's guess); a FIFO blocked the read
    forever as an npz, and was "not found" as an IDX file."""
    text = tmp_path / "notes.npz"
    text.write_text("train,test\n1,2\n")
    with pytest.raises(DataError, match=r"notes.npz: not an .npz archive: it starts with b'train,', where an .npz "
                                        r"archive \(a zip file\) starts with b'PK'"):
        prepare(DataParams(source="npz", path=str(text)), seed=0)
    os.mkfifo(tmp_path / "pipe.npz")
    with pytest.raises(DataError, match=r"pipe.npz is a FIFO, not a file of data"):
        prepare(DataParams(source="npz", path=str(tmp_path / "pipe.npz")), seed=0)
    folder, _ = idx_folder(tmp_path, rng, suffix="")
    (folder / "t10k-images-idx3-ubyte").unlink()
    os.mkfifo(folder / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte is a FIFO, not a file of data"):
        prepare(DataParams(source="idx", path=str(folder), validation_size=2), seed=0)


def test_levels_preprocessing_needs_integer_data(tmp_path, rng):
    params = npz_source(tmp_path, train=rng.random((10, 4)), test=rng.random((3, 4)))
    with pytest.raises(DataError, match="'levels' needs integer grey levels"):
        prepare(params.model_copy(update={"preprocessing": "levels"}), seed=0)


class ReachableHost:
    """What `socket.create_connection` returns when the download host answers."""

    def close(self):
        pass


def test_tfds_source_through_mock_data(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: ReachableHost())  # "online"
    with tfds.testing.mock_data(num_examples=12):
        prepared = prepare(DataParams(source="tfds:mnist", preprocessing="binarize", validation_size=4), seed=0)
    assert prepared.meta.sizes == {"train": 8, "val": 4, "test": 12}
    assert prepared.meta.image_shape == (28, 28, 1) and prepared.meta.dimension == 784
    assert set(np.unique(prepared.train)) <= {0.0, 1.0}
    assert prepared.test_labels.shape == (12,) and set(prepared.test_labels) <= set(range(10))


def test_tfds_colour_images_keep_their_channels_and_varying_sizes_are_refused(monkeypatch):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: ReachableHost())
    with tfds.testing.mock_data(num_examples=6):
        prepared = prepare(DataParams(source="tfds:cifar10", validation_size=2), seed=0)
        assert prepared.meta.image_shape == (32, 32, 3) and prepared.meta.n_levels == 256  # 8-bit levels
        with pytest.raises(DataError, match=r"'tf_flowers' has images of varying size \(shape \(None, None, 3\)\)"):
            prepare(DataParams(source="tfds:tf_flowers"), seed=0)
    with pytest.raises(DataError, match=r"data.source: TFDS data set 'mnist:99.0.0': Dataset mnist cannot be loaded at "
                                        r"version 99.0.0, only: 3.0.1"):  # TFDS's AssertionError, before
        prepare(DataParams(source="tfds:mnist:99.0.0"), seed=0)


def test_tfds_offline_fails_fast_with_instructions(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DataError, match="cannot be downloaded.*tfds build mnist.*data.tfds_data_dir"):
        prepare(DataParams(source="tfds:mnist", tfds_data_dir=str(tmp_path)), seed=0)


def test_tfds_unknown_name(tmp_path):
    with pytest.raises(DataError, match="unknown TFDS data set 'no_such_set'"):
        prepare(DataParams(source="tfds:no_such_set", tfds_data_dir=str(tmp_path)), seed=0)


@pytest.mark.parametrize(("source", "message"), [
    ("tfds:../../etc", r"tfds:../../etc is not a TFDS data set's name \(name, name/config"),
    ("tfds:mnist/", r"tfds:mnist/ is not a TFDS data set's name"),
    ("tfds:mnist/3.0.1", r"TFDS data set 'mnist/3.0.1': .*3.0.1"),  # a config, not a version: mnist has none
])
def test_tfds_names_it_cannot_take_are_refused_in_one_line(tmp_path, source, message):
    """Each was a ValueError traceback from TFDS."""
    with pytest.raises(DataError, match=message):
        prepare(DataParams(source=source, tfds_data_dir=str(tmp_path)), seed=0)


def test_json_outputs_refuse_numbers_that_are_not_finite(tmp_path):
    """NaN and infinities are not JSON (a metrics file with bare NaN breaks DVC and every reader): the
    writer names the key and writes nothing."""
    with pytest.raises(UserError, match=r"metrics/x.json: not written: ais.nll = nan, runs\[1\] = inf is not a finite"):
        json_text({"nll": 93.0, "ais": {"nll": float("nan")}, "runs": [1.0, float("inf")]}, "metrics/x.json")
    assert json.loads(json_text({"nll": 93.0, "k": 5, "name": None}, "metrics/x.json")) == {"nll": 93.0, "k": 5,
                                                                                            "name": None}


def write_idx(path, array: np.ndarray) -> None:
    """An IDX file as LeCun's MNIST files are laid out (gzipped when `path` ends in .gz)."""
    import gzip

    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


def idx_folder(tmp_path, rng, suffix=".gz", n_train=12, n_test=5):
    folder = tmp_path / "idx"
    folder.mkdir(exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 3, 4), dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 3, 4), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    for name, array in arrays.items():
        write_idx(folder / f"{name}{suffix}", array)
    return folder, arrays


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_source_reads_the_standard_files(tmp_path, rng, suffix):
    """Training images less the last validation_size (held out, in order), the test images and
    their labels, 256 grey levels: the values written, gzipped or not."""
    folder, arrays = idx_folder(tmp_path, rng, suffix)
    prepared = prepare(DataParams(source="idx", path=str(folder), validation_size=2), seed=0)
    train = arrays["train-images-idx3-ubyte"].reshape(12, 12)
    np.testing.assert_array_equal(prepared.train, train[:10])
    np.testing.assert_array_equal(prepared.val, train[10:])
    np.testing.assert_array_equal(prepared.test, arrays["t10k-images-idx3-ubyte"].reshape(5, 12))
    np.testing.assert_array_equal(prepared.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert prepared.meta.n_levels == 256 and prepared.meta.image_shape == (3, 4, 1)
    binary = prepare(DataParams(source="idx", path=str(folder), validation_size=2, preprocessing="binarize"), seed=0)
    np.testing.assert_array_equal(binary.test, arrays["t10k-images-idx3-ubyte"].reshape(5, 12) / 255 > 0.5)


def test_idx_reads_other_value_types(tmp_path, rng):
    from vae_tf.data import read_idx

    for array in (rng.integers(-300, 300, (2, 3), dtype=np.int16), rng.random((4, 2, 2)).astype(np.float32)):
        write_idx(tmp_path / "a.idx", array)
        np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_idx_images_of_wider_integers_have_the_levels_they_hold(tmp_path, rng, dtype):
    """int16 and int32 are both IDX types: 12-bit images (levels 0..4095) in either give 4096
    levels; int32 used to be refused (2^31 levels from its type), int16 given 32768."""
    folder, arrays = idx_folder(tmp_path, rng, suffix="")
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        twelve_bit = (arrays[name].astype(dtype) * 16)
        twelve_bit.flat[0] = 4095
        write_idx(folder / name, twelve_bit)
    prepared = prepare(DataParams(source="idx", path=str(folder), validation_size=2, preprocessing="levels"), seed=0)
    assert prepared.meta.n_levels == 4096 and prepared.train.max() == 4095
    write_idx(folder / "t10k-images-idx3-ubyte", np.full((5, 3, 4), 70000, np.int32))
    with pytest.raises(DataError, match=r"integer images need 2 to 65536 grey levels \(16-bit at most\), got 70001"):
        prepare(DataParams(source="idx", path=str(folder), validation_size=2, preprocessing="levels"), seed=0)


def test_idx_bad_files_are_refused_naming_the_file(tmp_path, rng):
    folder, arrays = idx_folder(tmp_path, rng, suffix="")
    params = DataParams(source="idx", path=str(folder), validation_size=2)
    test_images = folder / "t10k-images-idx3-ubyte"
    raw = test_images.read_bytes()
    test_images.write_bytes(raw[:-7])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated: 69 bytes where shape \(5, 3, 4\)"):
        prepare(params, seed=0)
    test_images.write_bytes(raw + b"\0")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: longer than its header says"):
        prepare(params, seed=0)
    test_images.write_bytes(b"PK\3\4" + raw)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: not an IDX file"):
        prepare(params, seed=0)
    test_images.write_bytes(raw[:4] + np.array([65536] * 3, ">u4").tobytes() + raw[16:])  # 2^48 values (a ValueError)
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated: .* shape \(65536, 65536, 65536\)"):
        prepare(params, seed=0)
    test_images.write_bytes(raw)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", arrays["t10k-images-idx3-ubyte"][::-1])
    with pytest.raises(DataError, match="both t10k-images-idx3-ubyte and t10k-images-idx3-ubyte.gz are there"):
        prepare(params, seed=0)  # which one it read, silently, decided the data
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: \(4,\) labels for the 5 images of t10k-images"):
        prepare(params, seed=0)
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (5, 4, 4), dtype=np.uint8))
    (folder / "t10k-labels-idx1-ubyte").unlink()  # labels are optional, images of one shape are not
    with pytest.raises(DataError, match="splits have different image shapes"):
        prepare(params, seed=0)
    (folder / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte \(or train-images-idx3-ubyte.gz\) not found"):
        prepare(params, seed=0)
    with pytest.raises(DataError, match="no such folder"):
        prepare(DataParams(source="idx", path=str(tmp_path / "none")), seed=0)
    (tmp_path / "broken-idx").mkdir()
    (tmp_path / "broken-idx" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: not readable"):
        prepare(DataParams(source="idx", path=str(tmp_path / "broken-idx")), seed=0)


def test_staged_outputs_are_readable_by_other_users(tmp_path):
    """A staged folder takes the umask's mode (0755 under 022), as a plain mkdir would: TF Serving
    running as another user reads export/ (tempfile's 0700 kept it out)."""
    import os

    from vae_tf.files import staged_directory

    previous = os.umask(0o022)
    try:
        with staged_directory(tmp_path / "out") as staging:
            (staging / "a.txt").write_text("x")
    finally:
        os.umask(previous)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "a.txt").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_source_outside_the_prepare_stages_dependencies_is_refused(tmp_path, monkeypatch):
    """The shipped dvc.yaml files depend on ${data.path}; a pipeline of the user's own that drops
    it would not rerun prepare when the file changes, so prepare refuses it naming both."""
    from vae_tf.errors import ParamsError
    from vae_tf.stages import prepare as prepare_stage

    monkeypatch.chdir(tmp_path)
    folder, _ = idx_folder(tmp_path, np.random.default_rng(0))
    (tmp_path / "params.yaml").write_text(f"data: {{source: idx, path: {folder}, validation_size: 2}}\n")
    (tmp_path / "dvc.yaml").write_text("stages:\n  prepare:\n    cmd: prepare\n    deps: [data/raw]\n")
    with pytest.raises(ParamsError, match=rf"data.path: {folder} is outside the prepare stage's dependencies in "
                                          r"dvc.yaml \(data/raw\), so replacing it would not rerun the stage"):
        prepare_stage("prepared")
    assert not (tmp_path / "prepared").exists()
    (tmp_path / "dvc.yaml").write_text("stages:\n  prepare:\n    cmd: prepare\n    deps: ['${ data.path }']\n")
    prepare_stage("prepared")  # the shipped form: DVC's reference to params.yaml, read as DVC reads it
    assert json.loads((tmp_path / "prepared/meta.json").read_text())["source"] == f"idx:{folder}"
