"""Dense CLIP: text-aligned patch features and training-free open-vocabulary segmentation.

    from clipforge.dense import encode_dense, segment_dataset
    feats = encode_dense(model, pixels, "clearclip")            # [N, H/patch, W/patch, embed_dim]
    run = segment_dataset(model, tokenizer, open_mask_source("shapes:seg:test:200"))
    run.summary["miou"]

See docs/dense.md.
"""

from .features import METHODS, RESNET_METHODS, encode_dense, output_stride, upsample_to
from .run import SegmentationRun, dense_pixels, segment_dataset
from .segment import IGNORE_INDEX, SegmentationScores, segment

__all__ = [
    "IGNORE_INDEX",
    "METHODS",
    "RESNET_METHODS",
    "SegmentationRun",
    "SegmentationScores",
    "dense_pixels",
    "encode_dense",
    "output_stride",
    "segment",
    "segment_dataset",
    "upsample_to",
]
