"""Datasets for the course: cards, one loader, embedded (offline) and full (downloaded) sources.

>>> from tlcourse import data
>>> ds = data.load("digits")          # or data.load(data.for_profile(quick="digits", full="mnist"))
>>> ds.train.images.shape, ds.classes
"""
from tlcourse.data.card import Card, Dataset, Split, cards_markdown
from tlcourse.data.registry import Raw, card, cards, for_profile, load, names, register

__all__ = ["Card", "Dataset", "Raw", "Split", "card", "cards", "cards_markdown", "for_profile", "load", "names", "register"]
