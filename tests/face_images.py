"""Test photos built offline from images that scikit-image ships in its wheel (nothing is downloaded).

Licences, as scikit-image's `skimage.data` docstrings state them (its data/README.txt says nothing about licences):
- `astronaut()`: Eileen Collins, NASA Great Images database; "No known copyright restrictions, released into the
  public domain."
- `coffee()`: courtesy of Pikolo Espresso Bar; "No copyright restrictions. CC0 by the photographer (Rachel Michetti)."
"""

from __future__ import annotations

import PIL.Image
import skimage.data

# Where OpenCV's frontal-face Haar cascade (scaleFactor 1.1, minNeighbors 5) puts the astronaut's face in the
# 512x512 photo: (x0, y0, x1, y1). Measured once; the face-detection tests check the detector still finds it here.
ASTRONAUT_FACE = (177, 66, 272, 161)
# The head and some context around it, pasted to build the several-face photo.
_HEAD_REGION = (135, 20, 315, 210)
# Relative sizes of the pasted heads; different so that "largest first" has a single right answer.
_HEAD_SCALES = (1.0, 0.8, 0.6)
_CANVAS_COLOUR = (128, 128, 128)
_GAP = 20


def one_face_photo() -> PIL.Image.Image:
    """The 512x512 RGB NASA astronaut portrait: exactly one face, at `ASTRONAUT_FACE`."""
    return PIL.Image.fromarray(skimage.data.astronaut())


def multi_face_photo() -> tuple[PIL.Image.Image, int]:
    """A grey canvas holding the astronaut's head at three sizes side by side (largest on the left), and the count 3.

    Returns the photo and the number of faces in it; heads are bottom-aligned with a gap so no two boxes overlap.
    """
    head = one_face_photo().crop(_HEAD_REGION)
    heads = [
        head.resize((round(head.width * s), round(head.height * s)), PIL.Image.Resampling.BILINEAR) for s in _HEAD_SCALES
    ]
    width = sum(h.width for h in heads) + _GAP * (len(heads) + 1)
    height = max(h.height for h in heads) + 2 * _GAP
    canvas = PIL.Image.new("RGB", (width, height), _CANVAS_COLOUR)
    x = _GAP
    for h in heads:
        canvas.paste(h, (x, height - _GAP - h.height))
        x += h.width + _GAP
    return canvas, len(heads)


def no_face_photo() -> PIL.Image.Image:
    """The 600x400 RGB coffee-cup photo (CC0): no face anywhere."""
    return PIL.Image.fromarray(skimage.data.coffee())


__all__ = ["ASTRONAUT_FACE", "multi_face_photo", "no_face_photo", "one_face_photo"]
