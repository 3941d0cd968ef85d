"""Dataset registry.

Every loader returns an :class:`ImageData` whose images are uint8 tensors ``(N, C, H, W)``: small
enough to live on the training device, so batches are cut by index with no DataLoader and no
per-sample Python. Files are read from ``DATA_ROOT`` (environment variable, default ``./data``)
and downloaded only when asked (``--download``). A missing or corrupt file is a
:class:`~bench.errors.DataError` that names the folder, the files and how to get them.

The real-world datasets whose images do not fit in memory (Clothing1M, Food-101N, WebVision)
live in :mod:`bench.data_real`, which this module imports so that loading this one registers
every dataset. What both return, :class:`~bench.image_data.ImageData`, lives in
:mod:`bench.image_data`, which depends on neither.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from bench import data_real  # noqa: F401  (registers the file-backed real-world datasets)
from bench.errors import ConfigError, DataError
from bench.image_data import DatasetSizes, ImageData, data_root
from bench.registry import DATASETS


def stratified_holdout(labels: np.ndarray, *, fraction: float,
                       rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """RSL's ``split_raw_trainset``: ``int(fraction * n_c)`` samples of every class held out.

    labels: (N,) clean labels. Classes are taken in the order they first appear in ``labels``
    (the code fills a dict while it walks the training set) and each draws its share with
    ``rng.choice(members, k, replace=False)``; a legacy ``RandomState``, as the code's
    ``np.random``, so that one state gives the code's indices. Returns (train_idx, val_idx):
    train ascending (the code's ``set`` difference), val in the order drawn.
    """
    labels = np.asarray(labels)
    _, first = np.unique(labels, return_index=True)
    held: list[np.ndarray] = []
    for cls in labels[np.sort(first)]:
        members = np.flatnonzero(labels == cls)
        held.append(rng.choice(members, int(fraction * len(members)), replace=False))
    val_idx = np.concatenate(held).astype(np.int64) if held else np.zeros(0, np.int64)
    keep = np.ones(len(labels), dtype=bool)
    keep[val_idx] = False
    return np.flatnonzero(keep), val_idx


def hold_out_clean(data: ImageData, noisy_labels: np.ndarray, *, fraction: float,
                   seed: int) -> tuple[ImageData, np.ndarray]:
    """Hold out a clean, class-stratified validation set: (training data, its noisy labels).

    As RSL's scripts: the noise is drawn on all training images first, then ``fraction`` of
    every clean class is set aside with its clean labels (``val_images``, ``val_labels``) and
    the rest, with its noisy labels, is the training set (45,000 / 5,000 on CIFAR at 0.1).
    seed: of the split's ``RandomState`` (the code draws it from ``np.random`` after
    ``seed_torch(0)`` and the noise draws, so its indices differ from these).
    """
    if not data.in_memory:
        raise ConfigError(f"{data.name}: train.clean_val_fraction needs a dataset held in memory")
    if (data.train_labels < 0).any():
        raise ConfigError(f"{data.name}: train.clean_val_fraction needs every clean label, and "
                          "some are unknown")
    train_idx, val_idx = stratified_holdout(data.train_labels, fraction=fraction,
                                            rng=np.random.RandomState(seed))
    rows = torch.from_numpy(train_idx)
    held = dataclasses.replace(
        data, train_images=data.train_images[rows], train_labels=data.train_labels[train_idx],
        human_labels={k: v[train_idx] for k, v in data.human_labels.items()},
        val_images=data.train_images[torch.from_numpy(val_idx)],
        val_labels=data.train_labels[val_idx])
    return held, np.asarray(noisy_labels)[train_idx]


def load_dataset(name: str, *, root: str | Path | None = None, download: bool = False,
                 verify: bool = True) -> ImageData:
    """Load a registered dataset from ``root`` (default ``DATA_ROOT``)."""
    loader = DATASETS.get(name)
    return loader(Path(root) if root is not None else data_root(), download=download,
                  verify=verify)


# ---- digits: the embedded default ------------------------------------------------------------

@DATASETS.register("digits",
                   sizes=DatasetSizes(train=1347, test=450, shape=(1, 8, 8), classes=10))
def load_digits(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images), a fixed stratified split.

    The split (75% train, 25% test, ``random_state=0``) never changes, so records stay
    comparable. Pixel values 0..16 are scaled to 0..255.
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = np.clip(np.rint(bunch.images * 16.0), 0, 255).astype(np.uint8)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(images, bunch.target.astype(np.int64),
                                              test_size=0.25, stratify=bunch.target,
                                              random_state=0)
    return ImageData("digits", torch.from_numpy(x_tr), y_tr, torch.from_numpy(x_te), y_te, 10,
                     mean=(0.30,), std=(0.37,))


# ---- MNIST and Fashion-MNIST -----------------------------------------------------------------

# md5 of the uncompressed IDX files (the published archives' contents).
_IDX_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


def _require_files(name: str, folder: Path, files: Iterable[str], *,
                   fetch: Callable[[], None] | None, hint: str) -> None:
    """A one-line DataError naming the ``files`` missing in ``folder`` (after ``fetch()``, the
    download, when given); ``hint`` completes "set DATA_ROOT to the folder that holds ..."."""
    files = list(files)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing and fetch is not None:
        fetch()
        missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)} in {folder}; set DATA_ROOT to the "
                        f"folder that holds {hint}")


def _verify_md5(name: str, folder: Path, md5s: Iterable[tuple[str, str]]) -> None:
    """A one-line DataError for the first file of ``(file, md5)`` whose checksum differs."""
    from torchvision.datasets.utils import check_integrity

    for fname, md5 in md5s:
        if not check_integrity(str(folder / fname), md5):
            raise DataError(f"{name}: {folder / fname} is corrupt (md5 differs from {md5}); "
                            "delete it and download again")


def _load_idx(root: Path, folder: str, tv_class: str, *, download: bool, verify: bool,
              mean: float, std: float, name: str) -> ImageData:
    import torchvision.datasets as tvd

    raw = root / folder / "raw"
    files = _IDX_MD5[folder]

    def fetch() -> None:
        getattr(tvd, tv_class)(str(root), train=True, download=True)
        getattr(tvd, tv_class)(str(root), train=False, download=True)

    _require_files(name, raw, files, fetch=fetch if download else None,
                   hint=f"{folder}/raw, or pass --download to fetch them with torchvision")
    if verify:
        _verify_md5(name, raw, files.items())
    try:
        train = getattr(tvd, tv_class)(str(root), train=True, download=False)
        test = getattr(tvd, tv_class)(str(root), train=False, download=False)
    except Exception as exc:  # torchvision raises several types on bad files
        raise DataError(f"{name}: cannot read the files in {raw}: {exc}") from None
    return ImageData(name, train.data[:, None].contiguous(), train.targets.numpy().astype(np.int64),
                     test.data[:, None].contiguous(), test.targets.numpy().astype(np.int64), 10,
                     mean=(mean,), std=(std,))


@DATASETS.register("mnist",
                   sizes=DatasetSizes(train=60_000, test=10_000, shape=(1, 28, 28), classes=10))
def load_mnist(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """MNIST (torchvision IDX files under DATA_ROOT/MNIST/raw)."""
    return _load_idx(root, "MNIST", "MNIST", download=download, verify=verify,
                     mean=0.1307, std=0.3081, name="mnist")


@DATASETS.register("fashion-mnist",
                   sizes=DatasetSizes(train=60_000, test=10_000, shape=(1, 28, 28), classes=10))
def load_fashion_mnist(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """Fashion-MNIST (IDX files under DATA_ROOT/FashionMNIST/raw)."""
    return _load_idx(root, "FashionMNIST", "FashionMNIST", download=download, verify=verify,
                     mean=0.2860, std=0.3530, name="fashion-mnist")


# ---- CIFAR-10 / CIFAR-100 (python pickle batches) --------------------------------------------

_CIFAR: dict[str, dict[str, Any]] = {
    "cifar10": dict(folder="cifar-10-batches-py", tv_class="CIFAR10", label_key="labels",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test=["test_batch"],
                    num_classes=10, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)),
    "cifar100": dict(folder="cifar-100-python", tv_class="CIFAR100", label_key="fine_labels",
                     train=["train"], test=["test"], num_classes=100,
                     mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762)),
}


def _read_cifar_batches(folder: Path, names: list[str], label_key: str, dataset: str):
    images, labels = [], []
    for n in names:
        path = folder / n
        try:
            with open(path, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            lab = np.asarray(entry[label_key], dtype=np.int64)
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as exc:
            raise DataError(f"{dataset}: cannot read {path}: {exc}") from None
        if len(lab) != len(data):
            raise DataError(f"{dataset}: {path} has {len(data)} images but {len(lab)} labels")
        images.append(data)
        labels.append(lab)
    return torch.from_numpy(np.concatenate(images)), np.concatenate(labels)


def _load_cifar(name: str, root: Path, *, download: bool, verify: bool) -> ImageData:
    spec = _CIFAR[name]
    folder = root / spec["folder"]
    expected = spec["train"] + spec["test"] + (["batches.meta"] if name == "cifar10" else ["meta"])
    import torchvision.datasets as tvd

    def fetch() -> None:
        getattr(tvd, spec["tv_class"])(str(root), train=True, download=True)

    _require_files(name, folder, expected, fetch=fetch if download else None,
                   hint=f"{spec['folder']}/ (the python version of the dataset), or pass "
                        "--download")
    if verify:
        cls = getattr(tvd, spec["tv_class"])
        _verify_md5(name, folder, cls.train_list + cls.test_list)
    x_tr, y_tr = _read_cifar_batches(folder, spec["train"], spec["label_key"], name)
    x_te, y_te = _read_cifar_batches(folder, spec["test"], spec["label_key"], name)
    return ImageData(name, x_tr, y_tr, x_te, y_te, spec["num_classes"], spec["mean"], spec["std"])


@DATASETS.register("cifar10",
                   sizes=DatasetSizes(train=50_000, test=10_000, shape=(3, 32, 32), classes=10))
def load_cifar10(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """CIFAR-10 (python batches under DATA_ROOT/cifar-10-batches-py)."""
    return _load_cifar("cifar10", root, download=download, verify=verify)


@DATASETS.register("cifar100",
                   sizes=DatasetSizes(train=50_000, test=10_000, shape=(3, 32, 32), classes=100))
def load_cifar100(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """CIFAR-100 fine labels (DATA_ROOT/cifar-100-python)."""
    return _load_cifar("cifar100", root, download=download, verify=verify)


# ---- CIFAR-10N / CIFAR-100N: human label sets on the CIFAR training images --------------------

CIFAR10N_SETS = {"aggre": "aggre_label", "worse": "worse_label", "random1": "random_label1",
                 "random2": "random_label2", "random3": "random_label3"}
CIFAR100N_SETS = {"noisy100": "noisy_label"}


def _load_cifar_n(name: str, base: str, file: str, sets: dict[str, str], root: Path, *,
                  download: bool, verify: bool) -> ImageData:
    data = _load_cifar(base, root, download=download, verify=verify)
    path = root / "CIFAR-10N" / file
    if not path.is_file():
        raise DataError(f"{name}: missing {path}; download {file} from "
                        "github.com/UCSC-REAL/cifar-10-100n (data/) into DATA_ROOT/CIFAR-10N/")
    try:
        labels = torch.load(path, weights_only=False)
    except Exception as exc:
        raise DataError(f"{name}: cannot read {path}: {exc}") from None
    clean = np.asarray(labels["clean_label"], dtype=np.int64)
    if len(clean) != len(data.train_labels) or not np.array_equal(clean, data.train_labels):
        raise DataError(f"{name}: clean_label in {path} does not match the {base} training labels")
    data.name = name
    data.human_labels = {k: np.asarray(labels[v], dtype=np.int64) for k, v in sets.items()}
    data.default_noise_variant = next(iter(sets))
    return data


@DATASETS.register("cifar10n",
                   sizes=DatasetSizes(train=50_000, test=10_000, shape=(3, 32, 32), classes=10))
def load_cifar10n(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """CIFAR-10 images with the CIFAR-10N human label sets (aggre, worse, random1-3)."""
    return _load_cifar_n("cifar10n", "cifar10", "CIFAR-10_human.pt", CIFAR10N_SETS, root,
                         download=download, verify=verify)


@DATASETS.register("cifar100n",
                   sizes=DatasetSizes(train=50_000, test=10_000, shape=(3, 32, 32), classes=100))
def load_cifar100n(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """CIFAR-100 images with the CIFAR-100N human labels (noisy100)."""
    return _load_cifar_n("cifar100n", "cifar100", "CIFAR-100_human.pt", CIFAR100N_SETS, root,
                         download=download, verify=verify)


def load_cifar_n_labels(path: str | Path) -> dict[str, np.ndarray]:
    """The label arrays of a CIFAR-N ``*_human.pt`` file (for inspection and tests)."""
    labels = torch.load(Path(path), weights_only=False)
    return {k: np.asarray(v) for k, v in labels.items()}

