"""torch Datasets for P3M training: samples read with p3m.io, augmented, normalised like the official code.

A training item is addressed by `(epoch, index)` (see `EpochSampler`): its augmentation draws come
from `numpy.random.default_rng([seed, epoch, index])`, so the data stream is reproducible across
worker counts, ranks and a stop/resume.

    >>> dataset = MattingTrainDataset(find_samples(root, "train"), AugmentConfig(), seed=0)
    >>> item = dataset[(0, 5)]   # dict of tensors: image, alpha, trimap [, foreground, background]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from p3m.data.layout import Sample
from p3m.data.transforms import AugmentConfig, augment
from p3m.errors import ShapeMismatchError
from p3m.models.normalization import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "EpochSampler",
    "MattingTrainDataset",
    "normalize_image",
]


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """RGB uint8 H x W x 3 -> float32 3 x H x W, x/255 then ImageNet mean/std (torchvision order)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return tensor.sub(mean).div(std)


class MattingTrainDataset(Dataset):
    """Augmented training samples (official recipe) as tensors.

    Keys: 'image' (3 x S x S normalised), 'alpha' and 'trimap' (1 x S x S float on 0..255), and
    when the samples have them and they are asked for: 'foreground', 'background' (normalised)
    and 'facemask' (1 x S x S float in {0, 1}); 'index' is the sample index.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        augment_config: AugmentConfig,
        seed: int = 0,
        use_composition: bool = True,
        use_facemask: bool = False,
    ) -> None:
        self.samples = list(samples)
        self.augment_config = augment_config
        self.seed = int(seed)
        self.use_composition = use_composition and all(
            s.foreground is not None and s.background is not None for s in self.samples
        )
        self.use_facemask = use_facemask and all(s.facemask is not None for s in self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int) -> dict[str, np.ndarray]:
        """The native-resolution arrays of sample `index` (image/foreground/background RGB uint8)."""
        from p3m.io import read_alpha_u8, read_image

        sample = self.samples[index]
        arrays = {"image": read_image(sample.image), "alpha": read_alpha_u8(sample.alpha)}
        if self.use_composition:
            arrays["foreground"] = read_image(sample.foreground)
            arrays["background"] = read_image(sample.background)
        if self.use_facemask:
            arrays["facemask"] = read_alpha_u8(sample.facemask)
        shape = arrays["image"].shape[:2]
        for key, value in arrays.items():
            if value.shape[:2] != shape:
                path = {"alpha": sample.alpha, "foreground": sample.foreground,
                        "background": sample.background, "facemask": sample.facemask}[key]
                raise ShapeMismatchError(
                    f"{key} is {value.shape[1]}x{value.shape[0]} but the image is {shape[1]}x{shape[0]}", path
                )
        return arrays

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        rng = np.random.default_rng([self.seed, int(epoch), int(index)])
        arrays = augment(self.read(index), self.augment_config, rng)
        item = {
            "image": normalize_image(arrays["image"]),
            "alpha": torch.from_numpy(arrays["alpha"])[None],
            "trimap": torch.from_numpy(arrays["trimap"])[None],
            "index": torch.tensor(index),
        }
        if self.use_composition:
            item["foreground"] = normalize_image(arrays["foreground"])
            item["background"] = normalize_image(arrays["background"])
        if self.use_facemask:
            item["facemask"] = torch.from_numpy((arrays["facemask"] >= 128).astype(np.float32))[None]
        return item


class EpochSampler(DistributedSampler):
    """DistributedSampler yielding `(epoch, index)` keys, able to skip the batches already done.

    Shuffles with (seed, epoch) like DistributedSampler; `set_epoch(epoch, skip=k)` drops this
    rank's first k indices, so a resumed run continues the epoch exactly where it stopped.
    """

    def __init__(
        self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True
    ) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True
        )
        self.skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = int(skip)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self.skip :]
        return iter([(self.epoch, int(index)) for index in indices])

    def __len__(self) -> int:
        return max(self.num_samples - self.skip, 0)
