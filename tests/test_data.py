"""Dataset loaders on small fixtures written in each dataset's real on-disk format, and on the
real files under DATA_ROOT where they exist."""

from __future__ import annotations

import json
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import engine
from bench.config import RunSpec, TrainConfig
from bench.data import load_cifar_n_labels, load_dataset
from bench.data_real import FileImageSet, load_evaluation_sets
from bench.errors import DataError

# ---- fixture writers -------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: magic (0, 0, type 0x08 = ubyte, ndim), big-endian dims, the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 12, n_test: int = 5):
    rng = np.random.default_rng(0)
    arrays = {"train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                        rng.integers(0, 10, n_train).astype(np.uint8)),
              "t10k": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                       rng.integers(0, 10, n_test).astype(np.uint8))}
    raw = root / folder / "raw"
    for split, (images, labels) in arrays.items():
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return arrays


def _pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def write_cifar10(root: Path, per_batch: int = 4, n_test: int = 3):
    """cifar-10-batches-py: data_batch_1..5, test_batch, batches.meta; images (N, 3, 32, 32)."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    train_x, train_y = [], []
    for b in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        _pickle(folder / f"data_batch_{b}", {
            "batch_label": f"training batch {b} of 5", "labels": y,
            "data": x.reshape(per_batch, 3072), "filenames": [f"img_{b}_{i}.png" for i in
                                                             range(per_batch)]})
        train_x.append(x)
        train_y += y
    test_x = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    test_y = rng.integers(0, 10, n_test).tolist()
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_y,
                                    "data": test_x.reshape(n_test, 3072),
                                    "filenames": [f"t_{i}.png" for i in range(n_test)]})
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)],
                                      "num_cases_per_batch": per_batch, "num_vis": 3072})
    return np.concatenate(train_x), np.array(train_y), test_x, np.array(test_y)


def write_cifar100(root: Path, n_train: int = 10, n_test: int = 4):
    rng = np.random.default_rng(2)
    folder = root / "cifar-100-python"
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        _pickle(folder / split, {"filenames": [f"{split}_{i}.png" for i in range(n)],
                                 "batch_label": f"{split} batch", "fine_labels": fine,
                                 "coarse_labels": [f // 5 for f in fine],
                                 "data": x.reshape(n, 3072)})
        out += [x, np.array(fine)]
    _pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)],
                              "coarse_label_names": [f"c{i}" for i in range(20)]})
    return out


def write_jpeg(path: Path, *, width: int, height: int, seed: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # smooth content compresses well and keeps the files tiny
    base = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)
    img.save(path, quality=85)


def write_clothing1m(root: Path, *, strip_images_level: bool = False) -> dict:
    """clothing1m/ with the five annotation files and images/<d>/<dd>/<n>.jpg."""
    folder = root / "clothing1m"
    folder.mkdir(parents=True)
    train = [f"images/{i % 2}/{i:02d}/{i}.jpg" for i in range(6)]
    test = [f"images/9/90/t{i}.jpg" for i in range(3)]
    val = [f"images/9/91/v{i}.jpg" for i in range(2)]
    noisy = {k: (i * 3) % 14 for i, k in enumerate(train)}
    clean = {train[1]: 5, train[4]: 12, **{k: 7 + i for i, k in enumerate(test)},
             **{k: i for i, k in enumerate(val)}}
    (folder / "noisy_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in noisy.items()))
    (folder / "clean_label_kv.txt").write_text("".join(f"{k} {v}\n" for k, v in clean.items()))
    (folder / "noisy_train_key_list.txt").write_text("\n".join(train) + "\n")
    (folder / "clean_test_key_list.txt").write_text("\n".join(test) + "\n")
    (folder / "clean_val_key_list.txt").write_text("\n".join(val) + "\n")
    for n, key in enumerate(train + test + val):
        rel = key[len("images/"):] if strip_images_level else key
        long_side = 256 + 8 + 16 * (n % 3)
        width, height = (256, long_side) if n % 2 else (long_side, 256)
        write_jpeg(folder / rel, width=width, height=height, seed=n)
    return {"train": train, "test": test, "noisy": noisy, "clean": clean}


FOOD_CLASSES = [f"dish_{i:03d}" for i in range(101)]


def write_food101n(root: Path) -> dict:
    rel = root / "Food-101N_release"
    (rel / "meta").mkdir(parents=True)
    (rel / "meta/classes.txt").write_text("class_name\n" + "\n".join(FOOD_CLASSES) + "\n")
    train = [f"{FOOD_CLASSES[c]}/{h}.jpg" for c, h in [(0, "a1"), (0, "a2"), (3, "b1"),
                                                       (3, "b2"), (100, "c1")]]
    (rel / "meta/imagelist.tsv").write_text("class_name/key\n" + "\n".join(train) + "\n")
    (rel / "meta/verified_train.tsv").write_text(
        "class_name/key\tverification_label\n"
        f"{train[0]}\t1\n{train[2]}\t0\n{train[4]}\t1\n")
    (rel / "meta/verified_val.tsv").write_text(
        f"class_name/key\tverification_label\n{train[1]}\t1\n{train[3]}\t0\n")
    test = [f"{FOOD_CLASSES[2]}/1001", f"{FOOD_CLASSES[99]}/1002"]
    food = root / "food-101"
    (food / "meta").mkdir(parents=True)
    (food / "meta/test.txt").write_text("\n".join(test) + "\n")
    (food / "meta/classes.txt").write_text("\n".join(FOOD_CLASSES) + "\n")
    for n, key in enumerate(train):
        write_jpeg(rel / "images" / key, width=300, height=256, seed=100 + n)
    for n, key in enumerate(test):
        write_jpeg(food / "images" / f"{key}.jpg", width=256, height=300, seed=200 + n)
    return {"train": train, "test": test}


def write_webvision(root: Path) -> dict:
    folder = root / "webvision"
    (folder / "info").mkdir(parents=True)
    train = [(f"google/q{c + 1:04d}/{i:08d}.jpg", c) for i, c in enumerate([0, 49, 50, 7, 999])]
    val = [(f"val{i:06d}.jpg", c) for i, c in enumerate([3, 60, 49], start=1)]
    (folder / "info/train_filelist_google.txt").write_text(
        "".join(f"{k} {c}\n" for k, c in train))
    (folder / "info/val_filelist.txt").write_text("".join(f"{k} {c}\n" for k, c in val))
    for n, (key, c) in enumerate(train):
        if c < 50:
            write_jpeg(folder / key, width=256, height=256, seed=300 + n)
    for n, (key, c) in enumerate(val):
        if c < 50:
            write_jpeg(folder / "val_images_256" / key, width=256, height=320, seed=400 + n)
    for c in (0, 3):
        write_jpeg(folder / "imagenet/val" / str(c) / f"ILSVRC2012_val_{c:08d}.JPEG",
                   width=320, height=256, seed=500 + c)
    return {"train": train, "val": val}


def reference_view(path: Path, *, top: int | None = None, left: int | None = None,
                   flip: bool = False) -> np.ndarray:
    """The 224 window of a decoded file (centre crop by default), channel-major (3, H, W)."""
    from PIL import Image

    with Image.open(path) as img:
        arr = np.asarray(img.convert("RGB"))
    h, w, _ = arr.shape
    assert min(h, w) == 256, "fixture images have a shorter side of 256 (no resize)"
    top = int(round((h - 224) / 2)) if top is None else top
    left = int(round((w - 224) / 2)) if left is None else left
    window = arr[top:top + 224, left:left + 224]
    if flip:
        window = window[:, ::-1]
    return np.ascontiguousarray(window.transpose(2, 0, 1))


# ---- MNIST / Fashion-MNIST ---------------------------------------------------------------------

@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_fixture_round_trips(tmp_path, name, folder) -> None:
    arrays = write_mnist(tmp_path, folder)
    data = load_dataset(name, root=tmp_path, verify=False)
    for images, labels, (want_x, want_y) in ((data.train_images, data.train_labels,
                                              arrays["train"]),
                                             (data.test_images, data.test_labels,
                                              arrays["t10k"])):
        assert images.dtype == torch.uint8 and images.shape == (len(want_x), 1, 28, 28)
        assert np.array_equal(images[:, 0].numpy(), want_x)
        assert labels.dtype == np.int64 and np.array_equal(labels, want_y)
    assert data.num_classes == 10 and data.in_memory and data.image_shape == (1, 28, 28)


def test_idx_checksum_mismatch_is_a_data_error(tmp_path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "MNIST/raw/train-images-idx3-ubyte"
    blob = bytearray(path.read_bytes())
    blob[100] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("mnist", root=tmp_path, verify=True)


def test_truncated_idx_is_a_data_error(tmp_path) -> None:
    write_mnist(tmp_path)
    path = tmp_path / "MNIST/raw/t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="cannot read"):
        load_dataset("mnist", root=tmp_path, verify=False)


def test_missing_mnist_names_folder_and_files(tmp_path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("mnist", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    assert "t10k-labels-idx1-ubyte" in msg and "\n" not in msg


# ---- CIFAR-10 / CIFAR-100 ----------------------------------------------------------------------

def test_cifar10_fixture_round_trips_channel_major(tmp_path) -> None:
    train_x, train_y, test_x, test_y = write_cifar10(tmp_path)
    data = load_dataset("cifar10", root=tmp_path, verify=False)
    assert data.train_images.dtype == torch.uint8 and data.train_images.shape == (20, 3, 32, 32)
    assert np.array_equal(data.train_images.numpy(), train_x)
    assert np.array_equal(data.test_images.numpy(), test_x)
    assert np.array_equal(data.train_labels, train_y) and data.train_labels.dtype == np.int64
    assert np.array_equal(data.test_labels, test_y)
    # a row is 1024 red, 1024 green, 1024 blue values, each 32x32 row-major
    with open(tmp_path / "cifar-10-batches-py/data_batch_1", "rb") as fh:
        row = pickle.load(fh)["data"][0]
    assert data.train_images[0, 1, 5, 7] == row[1024 + 5 * 32 + 7]
    assert data.train_images[0, 2, 31, 0] == row[2048 + 31 * 32]
    assert data.num_classes == 10 and data.image_shape == (3, 32, 32)


def test_cifar100_fixture_uses_fine_labels(tmp_path) -> None:
    train_x, train_y, test_x, test_y = write_cifar100(tmp_path)
    data = load_dataset("cifar100", root=tmp_path, verify=False)
    assert np.array_equal(data.train_images.numpy(), train_x)
    assert np.array_equal(data.test_images.numpy(), test_x)
    assert np.array_equal(data.train_labels, train_y) and np.array_equal(data.test_labels, test_y)
    assert data.num_classes == 100


def test_cifar_checksums_are_checked(tmp_path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="corrupt"):
        load_dataset("cifar10", root=tmp_path, verify=True)


def test_truncated_cifar_pickle_is_a_data_error(tmp_path) -> None:
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py/data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", root=tmp_path, verify=False)


@pytest.mark.parametrize("name,folder,first", [("cifar10", "cifar-10-batches-py", "data_batch_1"),
                                               ("cifar100", "cifar-100-python", "train")])
def test_missing_cifar_names_folder_and_files(tmp_path, name, folder, first) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(name, root=tmp_path)
    assert str(tmp_path / folder) in str(err.value) and first in str(err.value)


# ---- CIFAR-10N / CIFAR-100N --------------------------------------------------------------------

def test_cifar10n_fixture(tmp_path) -> None:
    _, train_y, _, _ = write_cifar10(tmp_path)
    rng = np.random.default_rng(3)
    sets = {k: rng.integers(0, 10, len(train_y)) for k in
            ("aggre_label", "worse_label", "random_label1", "random_label2", "random_label3")}
    (tmp_path / "CIFAR-10N").mkdir()
    torch.save({"clean_label": train_y.astype(np.int64), **sets},
               tmp_path / "CIFAR-10N/CIFAR-10_human.pt")
    data = load_dataset("cifar10n", root=tmp_path, verify=False)
    assert data.name == "cifar10n" and data.default_noise_variant == "aggre"
    assert sorted(data.human_labels) == ["aggre", "random1", "random2", "random3", "worse"]
    assert np.array_equal(data.human_labels["worse"], sets["worse_label"])
    assert np.array_equal(data.human_labels["random2"], sets["random_label2"])
    assert all(v.dtype == np.int64 for v in data.human_labels.values())
    assert np.array_equal(data.train_labels, train_y)


def test_cifar100n_fixture(tmp_path) -> None:
    _, train_y, _, _ = write_cifar100(tmp_path)
    noisy = (train_y + 1) % 100
    (tmp_path / "CIFAR-10N").mkdir()
    torch.save({"clean_label": train_y, "noisy_label": noisy,
                "clean_coarse_label": list(train_y // 5), "noisy_coarse_label": list(noisy // 5)},
               tmp_path / "CIFAR-10N/CIFAR-100_human.pt")
    data = load_dataset("cifar100n", root=tmp_path, verify=False)
    assert data.default_noise_variant == "noisy100"
    assert np.array_equal(data.human_labels["noisy100"], noisy)


def test_cifar10n_label_file_must_match_the_images(tmp_path) -> None:
    _, train_y, _, _ = write_cifar10(tmp_path)
    (tmp_path / "CIFAR-10N").mkdir()
    torch.save({"clean_label": (train_y + 1) % 10, "aggre_label": train_y, "worse_label": train_y,
                "random_label1": train_y, "random_label2": train_y, "random_label3": train_y},
               tmp_path / "CIFAR-10N/CIFAR-10_human.pt")
    with pytest.raises(DataError, match="does not match"):
        load_dataset("cifar10n", root=tmp_path, verify=False)


def test_cifar10n_missing_label_file(tmp_path) -> None:
    write_cifar10(tmp_path)
    with pytest.raises(DataError, match="CIFAR-10_human.pt"):
        load_dataset("cifar10n", root=tmp_path, verify=False)


def test_unknown_human_label_set_is_named(tmp_path) -> None:
    from bench.errors import ConfigError

    _, train_y, _, _ = write_cifar10(tmp_path)
    (tmp_path / "CIFAR-10N").mkdir()
    torch.save({"clean_label": train_y, **{k: train_y for k in (
        "aggre_label", "worse_label", "random_label1", "random_label2", "random_label3")}},
        tmp_path / "CIFAR-10N/CIFAR-10_human.pt")
    spec = RunSpec(grid="t", label="standard", method="standard", method_params={},
                   dataset="cifar10n", noise_type="human", noise_variant="agre",
                   train=TrainConfig(epochs=1))
    with pytest.raises(ConfigError) as err:
        engine.prepare(spec, torch.device("cpu"), data_root=tmp_path, verify=False)
    assert "'agre'" in str(err.value) and "aggre" in str(err.value)


# ---- the file-backed real-world datasets -------------------------------------------------------

@pytest.mark.parametrize("strip", [False, True], ids=["official-layout", "dividemix-layout"])
def test_clothing1m_fixture(tmp_path, strip) -> None:
    spec = write_clothing1m(tmp_path, strip_images_level=strip)
    data = load_dataset("clothing1m", root=tmp_path)
    assert not data.in_memory and data.image_shape == (3, 224, 224) and data.num_classes == 14
    assert isinstance(data.train_images, FileImageSet) and len(data.train_images) == 6
    assert data.train_labels.tolist() == [-1, 5, -1, -1, 12, -1]
    assert data.human_labels["noisy"].tolist() == [spec["noisy"][k] for k in spec["train"]]
    assert data.default_noise_variant == "noisy"
    assert data.test_labels.tolist() == [7, 8, 9] and len(data.test_images) == 3
    images = data.test_images.load(np.arange(3), train=False)
    assert images.dtype == torch.uint8 and images.shape == (3, 3, 224, 224)
    for i in range(3):
        assert np.array_equal(images[i].numpy(), reference_view(data.test_images.path(i)))
    val = load_evaluation_sets("clothing1m", root=tmp_path)["val"]
    assert val[1].tolist() == [0, 1] and len(val[0]) == 2


def test_food101n_fixture(tmp_path) -> None:
    spec = write_food101n(tmp_path)
    data = load_dataset("food101n", root=tmp_path)
    assert data.num_classes == 101 and len(data.train_images) == 5
    assert data.human_labels["noisy"].tolist() == [0, 0, 3, 3, 100]
    # verified correct -> the class; verified wrong or unverified -> unknown
    assert data.train_labels.tolist() == [0, -1, -1, -1, 100]
    assert data.train_images.verification.tolist() == [1, -1, 0, -1, 1]
    assert data.test_labels.tolist() == [2, 99]
    images = data.test_images.load(np.array([1, 0]), train=False)
    assert np.array_equal(images[0].numpy(), reference_view(
        tmp_path / "food-101/images" / f"{spec['test'][1]}.jpg"))
    val_images, val_labels = load_evaluation_sets("food101n", root=tmp_path)["verified_val"]
    assert val_labels.tolist() == [0] and len(val_images) == 1


def test_webvision_fixture_keeps_the_first_50_classes(tmp_path) -> None:
    write_webvision(tmp_path)
    data = load_dataset("webvision", root=tmp_path)
    assert data.num_classes == 50 and len(data.train_images) == 3
    assert data.human_labels["noisy"].tolist() == [0, 49, 7]
    assert data.train_labels.tolist() == [-1, -1, -1]
    assert data.test_labels.tolist() == [3, 49]
    images = data.train_images.load(np.arange(3), train=False)
    assert images.shape == (3, 3, 224, 224)
    assert np.array_equal(images[2].numpy(), reference_view(data.train_images.path(2)))
    ilsvrc = load_evaluation_sets("webvision", root=tmp_path)["ilsvrc12"]
    assert ilsvrc[1].tolist() == [0, 3]


def find_window(view: np.ndarray, full: np.ndarray) -> list[tuple[int, int, bool]]:
    """Offsets (top, left, flipped) at which ``view`` (3, 224, 224) is a window of ``full``."""
    _, h, w = full.shape
    found = []
    for flip in (False, True):
        for top in range(h - 223):
            for left in range(w - 223):
                window = full[:, top:top + 224, left:left + 224]
                if flip:
                    window = window[:, :, ::-1]
                # cheap test on one row first, then the whole window
                if np.array_equal(view[:, 0], window[:, 0]) and np.array_equal(view, window):
                    found.append((top, left, flip))
    return found


def test_train_loads_are_random_windows_and_deterministic(tmp_path) -> None:
    from PIL import Image

    write_clothing1m(tmp_path)
    images = load_dataset("clothing1m", root=tmp_path).train_images
    idx = np.array([0, 1, 2, 3, 4, 5, 0, 0])
    out = images.load(idx, train=True).numpy()
    assert out.shape == (8, 3, 224, 224) and out.dtype == np.uint8
    offsets = []
    for k, i in enumerate(idx):
        with Image.open(images.path(i)) as img:
            full = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
        found = find_window(out[k], full)
        assert found, f"load {k} is no 224 window of image {i}"
        offsets.append(found[0])
    assert {f for _, _, f in offsets} == {False, True}
    assert len(set(offsets)) > 4
    # same call sequence, same pixels; a repeated call (a second augmented view) differs
    fresh = load_dataset("clothing1m", root=tmp_path).train_images
    assert np.array_equal(fresh.load(idx, train=True).numpy(), out)
    assert not np.array_equal(fresh.load(idx, train=True).numpy(), out)
    a = images.load(idx, train=True, seed=5)
    assert torch.equal(a, images.load(idx, train=True, seed=5))


def test_resize_matches_torchvision(tmp_path) -> None:
    from PIL import Image
    from torchvision import transforms

    path = tmp_path / "img" / "small.jpg"
    write_jpeg(path, width=61, height=40, seed=7)
    images = FileImageSet(tmp_path / "img", ["small.jpg"], name="t", num_threads=1)
    out = images.load(np.array([0]), train=False)[0]
    ref = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                              transforms.PILToTensor()])(Image.open(path).convert("RGB"))
    assert torch.equal(out, ref)


@pytest.mark.parametrize("name,folder,first", [
    ("clothing1m", "clothing1m", "noisy_label_kv.txt"),
    ("food101n", "Food-101N_release", "meta/verified_train.tsv"),
    ("webvision", "webvision", "info/train_filelist_google.txt")])
def test_missing_real_world_dataset_names_folder_files_and_source(tmp_path, name, folder,
                                                                  first) -> None:
    with pytest.raises(DataError) as err:
        load_dataset(name, root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / folder) in msg and first in msg and "distributed by" in msg
    with pytest.raises(DataError, match="cannot be downloaded"):
        load_dataset(name, root=tmp_path, download=True)


def test_missing_image_files_are_data_errors(tmp_path) -> None:
    spec = write_clothing1m(tmp_path)
    (tmp_path / "clothing1m" / spec["train"][3]).unlink()
    with pytest.raises(DataError, match="missing"):
        load_dataset("clothing1m", root=tmp_path, verify=True)
    data = load_dataset("clothing1m", root=tmp_path, verify=False)
    with pytest.raises(DataError, match="cannot read image"):
        data.train_images.load(np.array([2, 3]), train=True)


def test_engine_runs_on_a_file_backed_dataset(tmp_path) -> None:
    write_clothing1m(tmp_path)
    spec = RunSpec(grid="t", label="standard", method="standard", method_params={},
                   dataset="clothing1m", network="lenet", noise_type="human",
                   noise_variant="noisy", seed=1,
                   train=TrainConfig(epochs=1, batch_size=4, normalize=True))
    record = engine.run(spec, device="cpu", data_root=tmp_path)
    assert record["status"] == "ok", record["error"]
    # clean labels are known for two training images: noisy 3 vs clean 5, noisy 12 vs clean 12
    assert record["realised_noise_rate"] == 0.5
    assert len(record["metrics"]["test_acc"]) == 1


def webvision_spec() -> RunSpec:
    return RunSpec(grid="t", label="standard", method="standard", method_params={},
                   dataset="webvision", network="lenet", noise_type="human",
                   noise_variant="noisy", seed=1, train=TrainConfig(epochs=1, batch_size=2))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # see the xfail below
def test_engine_runs_without_any_clean_label(tmp_path) -> None:
    write_webvision(tmp_path)
    spec = webvision_spec()
    engine.run(spec, device="cpu", data_root=tmp_path, results_dir=tmp_path / "results")
    on_disk = json.loads((tmp_path / "results" / spec.filename).read_text())
    assert on_disk["status"] == "ok", on_disk["error"]
    assert on_disk["realised_noise_rate"] is None
    assert on_disk["metrics"]["label_precision"] == [None]


def test_realised_noise_rate_is_none_without_clean_labels(tmp_path) -> None:
    write_webvision(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _, _, info = engine.prepare(webvision_spec(), torch.device("cpu"), data_root=tmp_path)
    assert info["realised_noise_rate"] is None


# ---- digits ----------------------------------------------------------------------------------

def test_digits_split_is_fixed_and_stratified() -> None:
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.train_images, b.train_images) and torch.equal(a.test_images, b.test_images)
    assert np.array_equal(a.train_labels, b.train_labels)
    assert a.train_images.shape == (1347, 1, 8, 8) and a.test_images.shape == (450, 1, 8, 8)
    assert a.train_images.dtype == torch.uint8 and int(a.train_images.max()) <= 255
    train_counts = np.bincount(a.train_labels, minlength=10)
    test_counts = np.bincount(a.test_labels, minlength=10)
    assert np.all(np.abs(test_counts - 0.25 * (train_counts + test_counts)) <= 1)


# ---- the real files under DATA_ROOT --------------------------------------------------------------

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_with_checksums(data_root) -> None:
    if not (data_root / "MNIST/raw/train-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST is not under {data_root}")
    data = load_dataset("mnist", root=data_root, verify=True)
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_images.shape == (10000, 1, 28, 28)
    assert np.bincount(data.train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(data.test_labels).tolist() == MNIST_TEST_COUNTS


def test_real_fashion_mnist_with_checksums(data_root) -> None:
    if not (data_root / "FashionMNIST/raw/train-images-idx3-ubyte").is_file():
        pytest.skip(f"Fashion-MNIST is not under {data_root}")
    data = load_dataset("fashion-mnist", root=data_root, verify=True)
    assert np.bincount(data.train_labels).tolist() == [6000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10


CIFAR10N_RATES = {"aggre_label": 9.01, "random_label1": 17.23, "random_label2": 18.12,
                  "random_label3": 17.64, "worse_label": 40.21}


def test_real_cifar10n_noise_rates(data_root) -> None:
    path = data_root / "CIFAR-10N" / "CIFAR-10_human.pt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    labels = load_cifar_n_labels(path)
    clean = labels["clean_label"]
    assert clean.shape == (50000,) and np.bincount(clean).tolist() == [5000] * 10
    rates = {k: round(100 * float(np.mean(labels[k] != clean)), 2) for k in CIFAR10N_RATES}
    assert rates == CIFAR10N_RATES


def test_real_cifar100n_noise_rate(data_root) -> None:
    path = data_root / "CIFAR-10N" / "CIFAR-100_human.pt"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    labels = load_cifar_n_labels(path)
    assert round(100 * float(np.mean(labels["noisy_label"] != labels["clean_label"])), 2) == 40.20
    coarse = np.asarray(labels["noisy_coarse_label"]) != np.asarray(labels["clean_coarse_label"])
    assert round(100 * float(np.mean(coarse)), 2) == 26.40
