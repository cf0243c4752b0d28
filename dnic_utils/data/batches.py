"""Batches sliced from uint8 tensors on the device, augmented and normalised there: no per-sample work in the hot loop."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import DnicError


@dataclass(frozen=True)
class Augment:
    """Per-image random translation (crop with zero padding), rotation and optional flip, done on whole batches."""

    pad: int = 4
    degrees: float = 0.0
    flip: bool = False
    alternate: bool = False  # with flip: each image is mirrored in every other epoch (its own fixed parity), not at random

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None, mirrored: torch.Tensor | None = None) -> torch.Tensor:
        """Augment a float batch (B, C, H, W) with one affine resample; `mirrored` (bool per image) replaces the random flips."""
        b, _, h, w = x.shape
        dev = x.device
        angle = (torch.rand(b, device=dev, generator=generator) * 2 - 1) * math.radians(self.degrees)
        shift = torch.randint(-self.pad, self.pad + 1, (2, b), device=dev, generator=generator).float()
        mirror = torch.ones(b, device=dev)
        if self.flip:
            if mirrored is None:
                mirrored = torch.rand(b, device=dev, generator=generator) < 0.5
            mirror = torch.where(mirrored, -mirror, mirror)
        cos, sin = angle.cos(), angle.sin()
        # Output-to-input map; integer shifts of 2/W land on pixel centres, so angle 0 is an exact crop.
        theta = torch.stack(
            [torch.stack([cos * mirror, -sin, 2 * shift[0] / w], 1), torch.stack([sin * mirror, cos, 2 * shift[1] / h], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def spread(total: int, n: int) -> torch.Tensor:
    """min(n, total) positions evenly spaced through range(total): a part that keeps the classes of a split stored class by class."""
    n = min(n, total)
    return torch.arange(n) * total // max(n, 1)


class BatchLoader:
    """Slices uint8 tensors held on the target device and augments and normalises whole batches there."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        device: str | torch.device = "cpu",
        shuffle: bool = False,
        augment: Augment | None = None,
        image_size: int | None = None,
        channels: int | None = None,
        drop_last: bool = False,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise DnicError(f"Batch size must be positive, got {batch_size}.", "pass a batch size ≥ 1.")
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.image_size, self.channels_last = image_size, channels_last
        self.channels = channels or x.shape[1]
        repeat = self.channels // x.shape[1]
        self.mean = torch.tensor(mean, device=self.device).repeat(repeat).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).repeat(repeat).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.epoch = 1  # the fit loop sets it; alternating flips mirror an image in every other epoch
        self.epoch_state = self.generator.get_state()  # the generator's state when the latest pass began: its order follows from it
        self._resume: tuple[int, torch.Tensor] | None = None  # (first batch, generator state) for the next pass, set by resume_at
        parity = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.flip_parity = torch.rand(len(self.y), device=self.device, generator=parity) < 0.5 if augment and augment.alternate else None

    def subset(self, index: torch.Tensor) -> BatchLoader:
        """A loader with the same settings over the images at these positions only (e.g. a fixed validation slice)."""
        part = copy.copy(self)
        index = index.to(self.device)
        part.x, part.y = self.x[index], self.y[index]
        part.flip_parity = None if self.flip_parity is None else self.flip_parity[index]
        return part

    def images(self, n: int) -> torch.Tensor:
        """n images spread evenly through the loader's, normalised as the model sees them, without augmentation.

        For data-dependent weights, say: the first n of the class-ordered CIFAR-10 JPEG copy would be nearly all airplanes.
        """
        return self.prepare(self.x[spread(len(self.x), n).to(self.device)].float().div_(255))

    def __len__(self) -> int:
        """Number of batches per pass."""
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """Resize, expand grey to RGB and normalise a float batch in [0, 1]."""
        if self.image_size and xb.shape[-1] != self.image_size:
            xb = F.interpolate(xb, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if xb.shape[1] != self.channels:
            xb = xb.expand(-1, self.channels, -1, -1)
        xb = (xb - self.mean) / self.std
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    def resume_at(self, batch: int, epoch_state: torch.Tensor) -> None:
        """Make the next pass finish an interrupted one, from batch `batch` (0-based) on.

        Its order is drawn again from epoch_state (the interrupted pass's); its augmentation draws go on from the generator's state now.
        """
        self._resume = (batch, self.generator.get_state())
        self.generator.set_state(epoch_state.cpu())

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (images, labels) batches on the device."""
        n = len(self.y)
        self.epoch_state = self.generator.get_state()
        order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle else None
        first = 0
        if self._resume is not None:
            (first, state), self._resume = self._resume, None
            self.generator.set_state(state)
        for i in range(first, len(self)):
            sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
            idx = order[sl] if order is not None else sl
            xb = self.x[idx].float().div_(255)
            if self.augment is not None:
                mirrored = None if self.flip_parity is None else self.flip_parity[idx] ^ bool(self.epoch % 2)
                xb = self.augment(xb, self.generator, mirrored)
            yield self.prepare(xb), self.y[idx]
