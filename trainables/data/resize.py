"""Images brought to 64 x 64 as disentanglement_lib brings SmallNORB and Cars3D there: Pillow's Lanczos filter.

The reference resizes each image with `PIL.Image.resize((64, 64),
PIL.Image.ANTIALIAS)` (SmallNORB) or `thumbnail((64, 64, 3), ANTIALIAS)`
(Cars3D). `ANTIALIAS` is Pillow's old name for `LANCZOS` (removed in Pillow
10); for a square image halved, as the 128-pixel cars are, `thumbnail` is
that same resize (its two-step reduction starts at a factor of 4, and
today's Pillow refuses the three-number size). So both come here, to the
same Pillow call.

One difference in the reference is kept: it reads SmallNORB's bytes as int8,
which Pillow takes in as 32-bit integers ("I;8", unsigned), so those images
are resized in Pillow's integer mode, whose Lanczos overshoot at sharp edges
is not clipped to 0..255 (the reference's pixels there fall slightly outside
[0, 1]). `integer_mode` resizes the same way and then clips, since a stored
pixel is a byte: the stored image differs from the reference's only where
the reference leaves [0, 1]. Cars3D's RGB bytes are resized in Pillow's
8-bit mode, as the reference does.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

SIZE = 64


def lanczos_64(images: np.ndarray, integer_mode: bool = False) -> np.ndarray:
    """(n, H, W) or (n, H, W, 3) uint8 images as (n, 64, 64) or (n, 64, 64, 3) uint8, resized one by one."""
    out = np.empty((len(images), SIZE, SIZE, *images.shape[3:]), dtype=np.uint8)
    for i, image in enumerate(images):
        source = Image.fromarray(image.astype(np.int32) if integer_mode else image)
        resized = np.asarray(source.resize((SIZE, SIZE), Image.Resampling.LANCZOS))
        out[i] = np.clip(resized, 0, 255) if integer_mode else resized
    return out
