"""FID reference statistics of ImageNet 64x64 (Chrabaszcz et al. 2017, "A Downsampled Variant of ImageNet"):
the 1,281,167 training images of TFDS's `imagenet_resized/64x64` (box-downsampled; build it once from the
downloaded archives). EDM and consistency models report ImageNet-64 FID against the full training set;
`--num 50000` gives a cheaper set. Only the data section: `jaxdistill fid-stats` reads nothing else.

Usage: jaxdistill fid-stats --config configs/fid/imagenet64.py --out stats/imagenet64_train.npz --inception inception_fid.npz
"""
import ml_collections


def get_config():
    return ml_collections.ConfigDict({"data": {"name": "tfds", "dataset": "imagenet_resized/64x64", "split": "train", "image_key": "image", "label_key": "label", "data_dir": None}})
