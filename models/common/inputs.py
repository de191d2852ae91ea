"""Input checks shared by the pose models."""

from __future__ import annotations

from torch import Tensor

from tokenprune.checks import check_floating


def check_images(images: object, image_size: tuple[int, int], like: Tensor) -> Tensor:
    """Require ``images`` of shape ``[B, 3, H, W]`` with ``(H, W) == image_size``, on the device
    and in the dtype of the model parameter ``like``."""
    images = check_floating("images", images, ndim=4)
    if tuple(images.shape[1:]) != (3, *image_size):
        raise ValueError(
            f"images must have shape [B, 3, {image_size[0]}, {image_size[1]}], "
            f"got {tuple(images.shape)}"
        )
    if images.dtype != like.dtype or images.device != like.device:
        raise ValueError(
            f"images ({images.dtype} on {images.device}) must match the model's parameters "
            f"({like.dtype} on {like.device})"
        )
    return images
