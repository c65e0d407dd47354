"""Image preprocessing: the one function that turns uint8 images into the network's input.

The reference evaluation resizes with Pillow's Lanczos filter to 144×384 (W×H) on the uint8
RGB image, scales to [0, 1] and normalises with the ImageNet mean and std; infrared images
are 3-channel images normalised the same way. Everything in this project (the backends,
export verification and calibration, evaluation, the live runtime, the demo) calls
:func:`preprocess`, so the input convention lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from deen.errors import DeenError

INPUT_HEIGHT = 384
INPUT_WIDTH = 144
#: The papers' input size (H, W). A model trained at another size records it in its
#: checkpoint and export manifest, and its embedder preprocesses to that size.
DEFAULT_INPUT_SIZE = (INPUT_HEIGHT, INPUT_WIDTH)


def parse_input_size(text: str, parameter: str = "input_size") -> tuple[int, int]:
    """A ``HEIGHTxWIDTH`` text (``384x144``) as a size DEEN can run at
    (:func:`check_input_size`)."""
    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit()):
        from deen.errors import ParameterError

        raise ParameterError(parameter, text, "expected HEIGHTxWIDTH, e.g. 384x144")
    return check_input_size((int(height), int(width)), parameter)


def check_input_size(size: tuple[int, int], parameter: str = "input_size") -> tuple[int, int]:
    """``size`` (height, width) if DEEN can run at it: the backbone divides by 16 and MFA's
    reshapes need even feature maps, so the height must be a multiple of 16 and the width
    of 4 (the papers' 384×144, or 64×24, are)."""
    height, width = (int(v) for v in size)
    if height < 16 or width < 4 or height % 16 or width % 4:
        from deen.errors import BadValueError

        raise BadValueError(parameter, f"{height}x{width}", "the height must be a positive "
                             "multiple of 16 and the width of 4 (e.g. 384x144)")
    return height, width


#: ImageNet statistics, in RGB channel order, applied after scaling to [0, 1].
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)

ColorOrder = Literal["bgr", "rgb"]
#: OpenCV decodes to BGR, so that is what a uint8 image is taken to be unless told otherwise.
DEFAULT_COLOR_ORDER: ColorOrder = "bgr"


def load_rgb(path: Path) -> Image.Image:
    """Decode an image file as RGB (datasets store RGB and IR images as image files)."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DeenError(f"{path}: unreadable image ({exc.__class__.__name__})") from exc


def _as_rgb(image: np.ndarray, color_order: ColorOrder) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise DeenError(f"images must be uint8 numpy arrays, got {type(image).__name__} "
                        f"{getattr(image, 'dtype', '')}".rstrip())
    if image.ndim == 2:  # single-channel infrared: replicate, as Pillow's L→RGB does
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or min(image.shape[:2]) < 1:
        raise DeenError(f"images must be H×W, H×W×3 or H×W×4, got shape {image.shape}")
    image = image[:, :, :3]
    if color_order == "bgr":
        return image[:, :, ::-1]
    if color_order == "rgb":
        return image
    raise DeenError(f"color order must be 'bgr' or 'rgb', got {color_order!r}")


def preprocess(
    images: Sequence[np.ndarray],
    color_order: ColorOrder = DEFAULT_COLOR_ORDER,
    size: tuple[int, int] = DEFAULT_INPUT_SIZE,
) -> np.ndarray:
    """Turn uint8 images (any size) into the normalised N×3×H×W float32 network input
    (H×W = ``size``, 384×144 unless the model was trained at another size).

    ``color_order`` says how 3-channel images are stored: ``"bgr"`` (OpenCV's
    ``cv2.imread``/``VideoCapture``, the default) or ``"rgb"`` (Pillow, most datasets
    decoded with PIL). 2-D images are treated as single-channel infrared and replicated.
    """
    height, width = size
    batch = np.empty((len(images), 3, height, width), dtype=np.float32)
    mean = np.asarray(MEAN_RGB, dtype=np.float32)[:, None, None]
    std = np.asarray(STD_RGB, dtype=np.float32)[:, None, None]
    for i, image in enumerate(images):
        rgb = np.ascontiguousarray(_as_rgb(image, color_order))
        resized = Image.fromarray(rgb).resize((width, height), Image.LANCZOS)
        chw = np.asarray(resized, dtype=np.float32).transpose(2, 0, 1) / 255.0
        batch[i] = (chw - mean) / std
    return batch


def preprocessing_manifest(size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> dict[str, object]:
    """What :func:`preprocess` does, for export manifests and non-Python readers."""
    return {
        "input_size_hw": list(size),
        "layout": "NCHW float32",
        "channel_order": "RGB",
        "resize": f"Pillow LANCZOS on the uint8 RGB image to {size[1]}x{size[0]} (WxH)",
        "scale": "1/255",
        "mean": list(MEAN_RGB),
        "std": list(STD_RGB),
        "formula": "(pixel/255 - mean) / std, per RGB channel",
        "infrared": "3-channel image, normalised like visible (single-channel is replicated)",
    }
