"""Datasets for the course: cards, one loader, embedded (offline) and full (downloaded) sources.

>>> from tlcourse import data
>>> ds = data.load("flowers")         # or data.load(data.for_profile(quick="flowers", full="tf_flowers"))
>>> ds.train.images.shape, ds.classes
>>> mine = data.from_folder("~/Pictures/my_classes", size=128)   # one sub-folder per class
"""
from tlcourse.data.card import Card, Dataset, Split, cards_markdown
from tlcourse.data.folder import FolderError, FolderWarning, from_folder
from tlcourse.data.registry import Raw, card, cards, for_profile, load, names, register

__all__ = ["Card", "Dataset", "FolderError", "FolderWarning", "Raw", "Split", "card", "cards",
           "cards_markdown", "for_profile", "from_folder", "load", "names", "register"]
