"""FID reference statistics of CIFAR-10 (Krizhevsky 2009): the 50,000 training images, as pytorch-fid's
and EDM's published statistics use them, read through TFDS (`tfds build cifar10` once; no TensorFlow
needed to read it). Only the data section: `jaxdistill fid-stats` reads nothing else.

Usage: jaxdistill fid-stats --config configs/fid/cifar10.py --out stats/cifar10_train.npz --inception inception_fid.npz
"""
import ml_collections


def get_config():
    return ml_collections.ConfigDict({"data": {"name": "tfds", "dataset": "cifar10", "split": "train", "image_key": "image", "label_key": "label", "data_dir": None}})
