"""The CIFAR-10 and CIFAR-10N loaders on the real files (skipped where they are absent).

Reading and checking the 180 MB of batches takes 10-20 s, so those tests are ``slow``; the
label-file test runs by default. Figures from the data folder's SOURCES.md: torchvision's md5 list, 50,000 / 10,000 images with
5,000 / 1,000 per class, CIFAR-10N's ``clean_label`` equal to the training labels in
``data_batch_1..5`` order, and the human label sets' noise rates against it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import CIFAR10N_SETS, load_cifar_n_labels, load_dataset
from bench.engine import prepare
from tests.conftest import real_data_root

# percent of training labels that differ from clean_label (SOURCES.md; Wei et al., ICLR 2022)
PUBLISHED_NOISE = {"aggre": 9.01, "random1": 17.23, "random2": 18.12, "random3": 17.64,
                   "worse": 40.21}


def _folder(*parts: str) -> Path:
    root = real_data_root()
    if root is None:
        pytest.skip("no real data folder: set DATA_ROOT to the folder of cifar-10-batches-py/")
    path = root.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the real {parts[0]} files are not on this machine")
    return root


def test_the_label_file_alone_has_the_published_noise_rates() -> None:
    root = _folder("CIFAR-10N", "CIFAR-10_human.pt")
    labels = load_cifar_n_labels(root / "CIFAR-10N" / "CIFAR-10_human.pt")
    clean = labels["clean_label"]
    assert np.bincount(clean, minlength=10).tolist() == [5_000] * 10
    for variant, key in CIFAR10N_SETS.items():
        rate = 100 * float((labels[key] != clean).mean())
        assert rate == pytest.approx(PUBLISHED_NOISE[variant], abs=0.005), variant


@pytest.fixture(scope="module")
def cifar10n():
    root = _folder("CIFAR-10N", "CIFAR-10_human.pt")
    _folder("cifar-10-batches-py")
    return load_dataset("cifar10n", root=root, verify=True)   # md5s and clean_label checked


@pytest.mark.slow
def test_every_cifar10_file_has_torchvision_md5() -> None:
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import check_integrity

    folder = _folder("cifar-10-batches-py") / "cifar-10-batches-py"
    for fname, md5 in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list:
        assert check_integrity(str(folder / fname), md5), fname
    assert check_integrity(str(folder / "batches.meta"), tvd.CIFAR10.meta["md5"])


@pytest.mark.slow
def test_cifar10_has_its_published_sizes_and_class_counts(cifar10n) -> None:
    data = cifar10n
    assert tuple(data.train_images.shape) == (50_000, 3, 32, 32)
    assert tuple(data.test_images.shape) == (10_000, 3, 32, 32)
    assert data.train_images.dtype == torch.uint8
    assert np.bincount(data.train_labels, minlength=10).tolist() == [5_000] * 10
    assert np.bincount(data.test_labels, minlength=10).tolist() == [1_000] * 10
    # the per-channel means the loader states are those of these pixels
    means = data.train_images.float().mean((0, 2, 3)).div(255).numpy()
    np.testing.assert_allclose(means, data.mean, atol=5e-4)


@pytest.mark.slow
def test_cifar10_loads_the_same_images_as_cifar10n(cifar10n) -> None:
    root = _folder("cifar-10-batches-py")
    plain = load_dataset("cifar10", root=root, verify=False)
    assert torch.equal(plain.train_images, cifar10n.train_images)
    np.testing.assert_array_equal(plain.test_labels, cifar10n.test_labels)


@pytest.mark.slow
def test_cifar10n_clean_label_is_the_training_labels_everywhere(cifar10n) -> None:
    root = _folder("CIFAR-10N", "CIFAR-10_human.pt")
    labels = load_cifar_n_labels(root / "CIFAR-10N" / "CIFAR-10_human.pt")
    clean = labels["clean_label"]
    assert len(clean) == 50_000
    assert int((clean == cifar10n.train_labels).sum()) == 50_000


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(CIFAR10N_SETS))
def test_every_human_label_set_has_its_published_noise_rate(cifar10n, variant, make_spec) -> None:
    assert variant in PUBLISHED_NOISE, "a label set without a published rate"
    spec = make_spec(dataset="cifar10n", network="cnn9", noise_type="human",
                     noise_variant=variant)
    data, noisy, info = prepare(spec, torch.device("cpu"), data=cifar10n)
    np.testing.assert_array_equal(noisy, cifar10n.human_labels[variant])
    assert 100 * info["realised_noise_rate"] == pytest.approx(PUBLISHED_NOISE[variant], abs=0.005)
