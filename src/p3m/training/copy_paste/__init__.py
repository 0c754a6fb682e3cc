"""P3M-CP, the paper's copy-and-paste of real faces during privacy-preserving training (section 5).

A model trained only on face-obfuscated images should still matte real faces. P3M-CP pastes
real faces from a public set onto the obfuscated face area of training samples, either on the
image (ICP, image level) or on the features after an early encoder layer (FCP, feature level).
Three modules, one idea:

* `operation`: `copy_paste`, the weight-free copy, augment, align and merge of one source face
  into a target facemask (images or feature maps);
* `sources`: the prepared source set (`build_cp_sources` from CelebAMask-HQ annotations or any
  face photos, `CPSourceSet` to draw from it; `p3m cp-sources build`);
* `hooks`: ICP and FCP for the trainer (`ImageCopyPaste`, `FeatureCopyPaste`,
  `CopyPasteTrainingHook`, `make_training_hook` from a config's `cp` section), plugged in through
  `p3m.training.hooks.TrainingHook`.

It lives in `p3m.training` because training is its only consumer; the anonymisation recipe
(`p3m.privacy`) makes the obfuscated faces P3M-CP pastes over, and gives `sources` its face masks.
Submodules are imported on first use (`sources` needs no torch).

    >>> hook = make_training_hook(config.cp, model)          # what the trainer does for cp.mode
    >>> result = copy_paste(image, face, facemask, face_mask, generator=np.random.default_rng(0))
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CopyPasteConfig": "p3m.training.copy_paste.operation",
    "CopyPasteResult": "p3m.training.copy_paste.operation",
    "PasteParams": "p3m.training.copy_paste.operation",
    "copy_paste": "p3m.training.copy_paste.operation",
    "draw_uniform": "p3m.training.copy_paste.operation",
    "mask_centroids": "p3m.training.copy_paste.operation",
    "resize_mask": "p3m.training.copy_paste.operation",
    "sample_paste_params": "p3m.training.copy_paste.operation",
    "INDEX_NAME": "p3m.training.copy_paste.sources",
    "SOURCE_FORMATS": "p3m.training.copy_paste.sources",
    "BuildReport": "p3m.training.copy_paste.sources",
    "CPSourceSet": "p3m.training.copy_paste.sources",
    "build_cp_sources": "p3m.training.copy_paste.sources",
    "celebamask_face_region": "p3m.training.copy_paste.sources",
    "crop_face": "p3m.training.copy_paste.sources",
    "CP_MODES": "p3m.training.copy_paste.hooks",
    "CopyPasteStats": "p3m.training.copy_paste.hooks",
    "CopyPasteTrainingHook": "p3m.training.copy_paste.hooks",
    "FeatureCopyPaste": "p3m.training.copy_paste.hooks",
    "ImageCopyPaste": "p3m.training.copy_paste.hooks",
    "make_training_hook": "p3m.training.copy_paste.hooks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'p3m.training.copy_paste' has no attribute {name!r}")
