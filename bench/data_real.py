"""Real-world noisy datasets read from their official releases: Clothing1M, Food-101N, WebVision.

Their images do not fit in memory, so a loader returns an :class:`~bench.image_data.ImageData` whose
``train_images`` / ``test_images`` are :class:`FileImageSet` objects: a list of files that
:meth:`FileImageSet.load` decodes on demand (a small thread pool, PIL) into uint8 tensors
``(B, 3, 224, 224)``. Training loads resize the shorter side to 256, take a random 224 crop and
flip horizontally with probability 1/2; test loads resize to 256 and take the centre 224 crop
(the transforms of DivideMix's ``dataloader_clothing1M.py``).

The noisy labels of these datasets are the data itself, so they come as the human label set
``noisy`` (grid: ``noise: [{type: human, variant: noisy}]``). The clean labels, which only the
engine sees (diagnostics), are the annotations that exist: ``-1`` marks a sample whose true
class is unknown.

None of these datasets can be downloaded by this package: their authors distribute them (on
request for Clothing1M). The folder layouts are documented in ``docs/datasets.md``.
"""

from __future__ import annotations

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from bench.errors import DataError
from bench.image_data import DatasetSizes, ImageData, data_root
from bench.registry import DATASETS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# DivideMix dataloader_clothing1M.py: transforms.Normalize of the Clothing1M images
CLOTHING1M_MEAN = (0.6959, 0.6537, 0.6371)
CLOTHING1M_STD = (0.3113, 0.3192, 0.3214)

WHERE = {
    "clothing1m": "Clothing1M (Xiao et al., CVPR 2015) is distributed by its authors on request; "
                  "see github.com/Cysu/noisy_label",
    "food101n": "Food-101N (Lee et al., CVPR 2018) is distributed by its authors at "
                "kuanghuei.github.io/Food-101N; its test set is the Food-101 test split "
                "(data.vision.ee.ethz.ch/cvl/datasets_extra/food-101)",
    "webvision": "WebVision 1.0 (Li et al., 2017) is distributed by its authors at "
                 "data.vision.ee.ethz.ch/cvl/webvision (the resized 'Google' images and "
                 "the validation set)",
}
# files checked for existence when a loader runs with verify=True, per split
_VERIFY_SAMPLE = 1000


# ---- the file-backed image set ---------------------------------------------------------------

class FileImageSet:
    """Images stored as files, decoded on demand.

    paths: N file paths relative to ``base`` (kept as a compact bytes array, since Clothing1M
        has a million of them).
    shape: ``(3, crop, crop)``, the shape of one loaded image.

    :meth:`load` is deterministic: the random crops and flips of a training load come from a
    numpy Generator seeded from the set's ``seed``, the number of training loads made so far and
    the requested indices, so the same sequence of calls gives the same pixels, while two loads
    of the same indices in one run (two augmented views) differ. Pass ``seed=`` to control it
    explicitly.
    """

    def __init__(self, base: str | Path, paths: Sequence[str], *, name: str, resize: int = 256,
                 crop: int = 224, num_threads: int = 8, seed: int = 0) -> None:
        self.base = Path(base)
        self.paths = np.asarray([p.encode() for p in paths], dtype=bytes)
        self.name = name
        self.resize = int(resize)
        self.crop = int(crop)
        self.shape = (3, self.crop, self.crop)
        self.num_threads = int(num_threads)
        self.seed = int(seed)
        # Food-101N: per image 1 (label verified correct), 0 (verified wrong), -1 (unverified)
        self.verification: np.ndarray | None = None
        self._calls = itertools.count()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, i: int) -> Path:
        return self.base / self.paths[int(i)].decode()

    def load(self, indices: np.ndarray, *, train: bool, seed: int | None = None) -> torch.Tensor:
        """Decode images ``indices`` into a uint8 tensor (B, 3, crop, crop).

        train: random crop + horizontal flip (else the centre crop).
        seed: seed of this call's crops and flips (default: derived as described above).
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(indices)
        if train:
            if seed is None:
                entropy = [self.seed, next(self._calls), *(int(i) for i in indices)]
            else:
                entropy = [self.seed, int(seed)]
            # offsets as fractions of the free range: drawn before decoding, so thread order
            # cannot change them
            draws = np.random.default_rng(entropy).random((n, 3))
        else:
            draws = None
        out = np.empty((n, self.crop, self.crop, 3), dtype=np.uint8)

        def work(k: int) -> None:
            out[k] = self._decode(int(indices[k]), None if draws is None else draws[k])

        if n <= 1 or self.num_threads <= 1:
            for k in range(n):
                work(k)
        else:
            list(self._executor().map(work, range(n)))
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="decode")
            return self._pool

    def _decode(self, i: int, draw: np.ndarray | None) -> np.ndarray:
        from PIL import Image

        path = self.path(i)
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                img = _resize_shorter(img, self.resize)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{self.name}: cannot read image {path}: {exc}") from None
        w, h = img.size
        if draw is None:  # torchvision CenterCrop rounds the offsets
            top = int(round((h - self.crop) / 2.0))
            left = int(round((w - self.crop) / 2.0))
            flip = False
        else:
            top = int(draw[0] * (h - self.crop + 1))
            left = int(draw[1] * (w - self.crop + 1))
            flip = bool(draw[2] < 0.5)
        img = img.crop((left, top, left + self.crop, top + self.crop))
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(img, dtype=np.uint8)

    def __getstate__(self) -> dict:  # thread pools and locks do not pickle
        state = dict(self.__dict__)
        state.update(_pool=None, _lock=None, _calls=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pool, self._lock, self._calls = None, threading.Lock(), itertools.count()

    def __repr__(self) -> str:
        return f"FileImageSet({self.name!r}, {len(self)} images under {self.base})"


def _resize_shorter(img, size: int):
    """torchvision ``Resize(size)`` on a PIL image: shorter side -> size, bilinear."""
    from PIL import Image

    w, h = img.size
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    if new == (w, h):
        return img
    return img.resize(new, Image.Resampling.BILINEAR)


# ---- helpers ---------------------------------------------------------------------------------

def _require(name: str, folder: Path, files: Iterable[str]) -> None:
    files = list(files)
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{name}: missing {', '.join(missing)} in {folder} (expected there: "
            f"{', '.join(files)}); {WHERE[name]}. Set DATA_ROOT to the folder that holds it; "
            "layouts in docs/datasets.md")


def _lines(path: Path, name: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [ln.strip() for ln in fh if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{name}: cannot read {path}: {exc}") from None


def _key_value(path: Path, name: str) -> dict[str, int]:
    """``key label`` lines (Clothing1M ``*_kv.txt``, WebVision file lists) -> dict."""
    out: dict[str, int] = {}
    for n, line in enumerate(_lines(path, name), 1):
        parts = line.split()
        try:
            out[parts[0]] = int(parts[-1])
        except (ValueError, IndexError):
            raise DataError(f"{name}: {path}:{n}: expected 'key label', "
                            f"got {line[:80]!r}") from None
    return out


def _check_sample(name: str, images: FileImageSet) -> None:
    """Existence of an evenly spread sample of the files (all of them would take minutes)."""
    if len(images) == 0:
        raise DataError(f"{name}: no images listed for {images.base}")
    picks = np.unique(np.linspace(0, len(images) - 1, min(len(images), _VERIFY_SAMPLE)).astype(int))
    absent = [str(images.path(i)) for i in picks if not images.path(i).is_file()]
    if absent:
        raise DataError(f"{name}: {len(absent)} of {len(picks)} sampled image files are missing, "
                        f"e.g. {absent[0]}; check the layout in docs/datasets.md")


def _no_download(name: str, download: bool) -> None:
    if download:
        raise DataError(f"{name} cannot be downloaded automatically: {WHERE[name]}")


def _release_folder(name: str, folder: Path, files: Iterable[str], *, download: bool) -> Path:
    """``folder``, once it is known to hold the release's ``files`` (it cannot be downloaded)."""
    _no_download(name, download)
    _require(name, folder, files)
    return folder


# ---- Clothing1M ------------------------------------------------------------------------------

CLOTHING1M_FILES = ("noisy_label_kv.txt", "clean_label_kv.txt", "noisy_train_key_list.txt",
                    "clean_test_key_list.txt", "clean_val_key_list.txt")


def _clothing1m_set(folder: Path, keys: list[str], name: str) -> FileImageSet:
    """Keys read ``images/0/00/x.jpg``; DivideMix extracts the archives without the ``images/``
    level and strips it from the keys. Both layouts are accepted (decided on the first key)."""
    prefix = "images/"
    if keys and not (folder / keys[0]).is_file() and keys[0].startswith(prefix) \
            and (folder / keys[0][len(prefix):]).is_file():
        keys = [k[len(prefix):] if k.startswith(prefix) else k for k in keys]
    return FileImageSet(folder, keys, name=name)


@DATASETS.register("clothing1m",  # the noisy training set as released
                   sizes=DatasetSizes(train=1_000_000, test=10_526, shape=(3, 224, 224), classes=14))
def load_clothing1m(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """Clothing1M: 1M noisy web images of 14 clothing classes; clean test set of 10,526.

    train_labels: the clean label where ``clean_label_kv.txt`` has the image, else -1.
    human_labels["noisy"]: the web labels of ``noisy_label_kv.txt``.
    """
    name = "clothing1m"
    folder = _release_folder(name, Path(root) / "clothing1m", CLOTHING1M_FILES, download=download)
    noisy_kv = _key_value(folder / "noisy_label_kv.txt", name)
    clean_kv = _key_value(folder / "clean_label_kv.txt", name)
    train_keys = _lines(folder / "noisy_train_key_list.txt", name)
    test_keys = _lines(folder / "clean_test_key_list.txt", name)
    absent = [k for k in train_keys if k not in noisy_kv]
    if absent:
        raise DataError(f"{name}: {len(absent)} keys of noisy_train_key_list.txt have no label "
                        f"in noisy_label_kv.txt, e.g. {absent[0]}")
    absent = [k for k in test_keys if k not in clean_kv]
    if absent:
        raise DataError(f"{name}: {len(absent)} keys of clean_test_key_list.txt have no label "
                        f"in clean_label_kv.txt, e.g. {absent[0]}")
    noisy = np.array([noisy_kv[k] for k in train_keys], dtype=np.int64)
    clean = np.array([clean_kv.get(k, -1) for k in train_keys], dtype=np.int64)
    test_labels = np.array([clean_kv[k] for k in test_keys], dtype=np.int64)
    train = _clothing1m_set(folder, train_keys, name)
    test = _clothing1m_set(folder, test_keys, name)
    if verify:
        _check_sample(name, train)
        _check_sample(name, test)
    return ImageData(name, train, clean, test, test_labels, 14, CLOTHING1M_MEAN, CLOTHING1M_STD,
                     human_labels={"noisy": noisy}, default_noise_variant="noisy")


# ---- Food-101N -------------------------------------------------------------------------------

FOOD101N_FILES = ("meta/classes.txt", "meta/imagelist.tsv", "meta/verified_train.tsv",
                  "meta/verified_val.tsv")
FOOD101_FILES = ("meta/test.txt",)


def _food_classes(path: Path, name: str) -> list[str]:
    classes = [c for c in _lines(path, name) if c != "class_name"]  # Food-101N has a header
    if len(classes) != 101 or len(set(classes)) != 101:
        raise DataError(f"{name}: {path} lists {len(classes)} classes, not 101 distinct ones")
    return classes


def _food_list(path: Path, name: str) -> list[str]:
    return [ln for ln in _lines(path, name) if not ln.startswith("class_name")]


def _verification(path: Path, name: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in _food_list(path, name):
        parts = line.split("\t") if "\t" in line else line.split()
        try:
            out[parts[0].strip()] = int(parts[-1])
        except (ValueError, IndexError):
            raise DataError(f"{name}: {path}: expected 'class/key<TAB>0|1', got "
                            f"{line[:80]!r}") from None
    return out


def _class_index(keys: list[str], index: dict[str, int], path: Path, name: str) -> np.ndarray:
    try:
        return np.array([index[k.split("/", 1)[0]] for k in keys], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"{name}: {path} names class {exc.args[0]!r}, which is not in "
                        "meta/classes.txt") from None


@DATASETS.register("food101n",  # the noisy training set as released
                   sizes=DatasetSizes(train=310_009, test=25_250, shape=(3, 224, 224), classes=101))
def load_food101n(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """Food-101N: 310k web images of the 101 Food-101 classes; Food-101's test split.

    The noisy label of an image is its folder (human_labels["noisy"]). ``verified_train.tsv``
    says for about 53k of them whether that label is correct (1) or not (0): train_labels is the
    class where it is verified correct and -1 elsewhere (the true class of a wrong label is
    unknown). ``FileImageSet.verification`` of the training set keeps the 1/0/-1 flags.
    """
    name = "food101n"
    _no_download(name, download)
    folder = Path(root) / "Food-101N_release"
    test_folder = Path(root) / "food-101"
    _require(name, folder, FOOD101N_FILES)
    _require(name, test_folder, FOOD101_FILES)
    classes = _food_classes(folder / "meta/classes.txt", name)
    index = {c: i for i, c in enumerate(classes)}
    train_keys = _food_list(folder / "meta/imagelist.tsv", name)
    noisy = _class_index(train_keys, index, folder / "meta/imagelist.tsv", name)
    verified = _verification(folder / "meta/verified_train.tsv", name)
    flags = np.array([verified.get(k, -1) for k in train_keys], dtype=np.int8)
    clean = np.where(flags == 1, noisy, -1).astype(np.int64)
    test_keys = _food_list(test_folder / "meta/test.txt", name)
    test_labels = _class_index(test_keys, index, test_folder / "meta/test.txt", name)
    train = FileImageSet(folder / "images", train_keys, name=name)
    train.verification = flags
    test = FileImageSet(test_folder / "images", [f"{k}.jpg" for k in test_keys], name=name)
    if verify:
        _check_sample(name, train)
        _check_sample(name, test)
    return ImageData(name, train, clean, test, test_labels, 101, IMAGENET_MEAN, IMAGENET_STD,
                     human_labels={"noisy": noisy}, default_noise_variant="noisy")


# ---- WebVision (mini: the first 50 classes) --------------------------------------------------

WEBVISION_FILES = ("info/train_filelist_google.txt", "info/val_filelist.txt")
MINI_WEBVISION_CLASSES = 50


@DATASETS.register("webvision",  # mini-WebVision: the first 50 classes
                   sizes=DatasetSizes(train=65_944, test=2_500, shape=(3, 224, 224), classes=50))
def load_webvision(root: Path, *, download: bool = False, verify: bool = True) -> ImageData:
    """Mini-WebVision: the Google images of WebVision 1.0's first 50 classes (about 66k).

    The test set is WebVision's validation set of those classes (``val_images_256/``). No clean
    training labels exist: train_labels is -1 throughout, the web labels are
    human_labels["noisy"].
    """
    name = "webvision"
    folder = _release_folder(name, Path(root) / "webvision", WEBVISION_FILES, download=download)
    train_kv = _key_value(folder / "info/train_filelist_google.txt", name)
    test_kv = _key_value(folder / "info/val_filelist.txt", name)
    train_keys = [k for k, v in train_kv.items() if v < MINI_WEBVISION_CLASSES]
    test_keys = [k for k, v in test_kv.items() if v < MINI_WEBVISION_CLASSES]
    noisy = np.array([train_kv[k] for k in train_keys], dtype=np.int64)
    test_labels = np.array([test_kv[k] for k in test_keys], dtype=np.int64)
    train = FileImageSet(folder, train_keys, name=name)
    test = FileImageSet(folder / "val_images_256", test_keys, name=name)
    if verify:
        _check_sample(name, train)
        _check_sample(name, test)
    return ImageData(name, train, np.full(len(train_keys), -1, dtype=np.int64), test,
                     test_labels, MINI_WEBVISION_CLASSES, IMAGENET_MEAN, IMAGENET_STD,
                     human_labels={"noisy": noisy}, default_noise_variant="noisy")


# ---- further evaluation sets -----------------------------------------------------------------

def load_evaluation_sets(name: str, *, root: str | Path | None = None,
                         ) -> dict[str, tuple[FileImageSet, np.ndarray]]:
    """Held-out sets beside a dataset's test set: ``{set name: (images, labels (M,))}``.

    clothing1m: ``val`` (clean_val_key_list.txt, 14,313 images, for model selection).
    food101n: ``verified_val`` (the images of verified_val.tsv whose label is verified correct).
    webvision: ``ilsvrc12`` when ``webvision/imagenet/val/<class>/`` exists (ImageNet validation
        images of the 50 classes, in class-index folders as DivideMix arranges them).
    """
    root = Path(root) if root is not None else data_root()
    if name == "clothing1m":
        folder = root / "clothing1m"
        _require(name, folder, CLOTHING1M_FILES)
        clean_kv = _key_value(folder / "clean_label_kv.txt", name)
        keys = [k for k in _lines(folder / "clean_val_key_list.txt", name) if k in clean_kv]
        labels = np.array([clean_kv[k] for k in keys], dtype=np.int64)
        return {"val": (_clothing1m_set(folder, keys, name), labels)}
    if name == "food101n":
        folder = root / "Food-101N_release"
        _require(name, folder, FOOD101N_FILES)
        index = {c: i for i, c in enumerate(_food_classes(folder / "meta/classes.txt", name))}
        verified = _verification(folder / "meta/verified_val.tsv", name)
        keys = [k for k, ok in verified.items() if ok == 1]
        labels = _class_index(keys, index, folder / "meta/verified_val.tsv", name)
        return {"verified_val": (FileImageSet(folder / "images", keys, name=name), labels)}
    if name == "webvision":
        val = root / "webvision" / "imagenet" / "val"
        if not val.is_dir():
            return {}
        keys = []
        classes: list[int] = []
        for c in range(MINI_WEBVISION_CLASSES):
            files = sorted(p.name for p in (val / str(c)).glob("*") if p.is_file())
            keys += [f"{c}/{f}" for f in files]
            classes += [c] * len(files)
        return {"ilsvrc12": (FileImageSet(val, keys, name=name), np.array(classes, dtype=np.int64))}
    return {}
