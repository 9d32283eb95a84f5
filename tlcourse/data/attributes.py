"""Full-profile attribute benchmark for zero-shot learning: CUB-200-2011 birds (registered on import).

Caltech-UCSD Birds-200-2011 (Wah et al., 2011) has 11,788 photos of 200 North American bird
species and, for every species, 312 attributes ("has_bill_shape::hooked", "has_wing_color::blue")
with the percentage of its photos in which annotators marked each one. Those percentages, divided
by 100, are the attribute table (continuous; ``AttributeTable.binary()`` thresholds it).

Which classes are unseen follows the "proposed split" of Xian, Lampert, Schiele & Akata (TPAMI 2018):
50 species, none of which is among ImageNet-1k's classes, so an ImageNet backbone has not been
trained on them. The 150 seen species' photos are divided 60/20/20 into train, validation and
test (stratified, with a fixed seed); the test split holds those seen-class photos plus every
photo of the 50 unseen species, for zero-shot and generalised zero-shot evaluation alike.

Each photo is cut to the square around the bird's annotated bounding box (the box's longer side,
plus an eighth on each side, kept inside the photo) and resized to ``CUB_SIZE`` pixels: the birds
fill a small part of many photos, and a crop keeps them at a size the backbone can see while the
decoded arrays stay under 1 GB. The decoded arrays go through :mod:`tlcourse.data.full`'s cache.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import PurePosixPath

import numpy as np

from tlcourse.data import download, full
from tlcourse.data.card import Card
from tlcourse.data.registry import Raw, register
from tlcourse.data.splits import name_seed, stratified_split

CUB_SIZE = 160
CUB_BOX_MARGIN = 0.125  # of the box's longer side, added on each side
CUB_SEEN_FRACTIONS = (0.6, 0.2, 0.2)

# The species as CUB numbers its folders ("001.Black_footed_Albatross" is class 1), in that order.
CUB_FOLDER_NAMES = tuple("""
Black_footed_Albatross Laysan_Albatross Sooty_Albatross Groove_billed_Ani Crested_Auklet
Least_Auklet Parakeet_Auklet Rhinoceros_Auklet Brewer_Blackbird Red_winged_Blackbird Rusty_Blackbird
Yellow_headed_Blackbird Bobolink Indigo_Bunting Lazuli_Bunting Painted_Bunting Cardinal
Spotted_Catbird Gray_Catbird Yellow_breasted_Chat Eastern_Towhee Chuck_will_Widow Brandt_Cormorant
Red_faced_Cormorant Pelagic_Cormorant Bronzed_Cowbird Shiny_Cowbird Brown_Creeper American_Crow
Fish_Crow Black_billed_Cuckoo Mangrove_Cuckoo Yellow_billed_Cuckoo Gray_crowned_Rosy_Finch
Purple_Finch Northern_Flicker Acadian_Flycatcher Great_Crested_Flycatcher Least_Flycatcher
Olive_sided_Flycatcher Scissor_tailed_Flycatcher Vermilion_Flycatcher Yellow_bellied_Flycatcher
Frigatebird Northern_Fulmar Gadwall American_Goldfinch European_Goldfinch Boat_tailed_Grackle
Eared_Grebe Horned_Grebe Pied_billed_Grebe Western_Grebe Blue_Grosbeak Evening_Grosbeak
Pine_Grosbeak Rose_breasted_Grosbeak Pigeon_Guillemot California_Gull Glaucous_winged_Gull
Heermann_Gull Herring_Gull Ivory_Gull Ring_billed_Gull Slaty_backed_Gull Western_Gull
Anna_Hummingbird Ruby_throated_Hummingbird Rufous_Hummingbird Green_Violetear Long_tailed_Jaeger
Pomarine_Jaeger Blue_Jay Florida_Jay Green_Jay Dark_eyed_Junco Tropical_Kingbird Gray_Kingbird
Belted_Kingfisher Green_Kingfisher Pied_Kingfisher Ringed_Kingfisher White_breasted_Kingfisher
Red_legged_Kittiwake Horned_Lark Pacific_Loon Mallard Western_Meadowlark Hooded_Merganser
Red_breasted_Merganser Mockingbird Nighthawk Clark_Nutcracker White_breasted_Nuthatch
Baltimore_Oriole Hooded_Oriole Orchard_Oriole Scott_Oriole Ovenbird Brown_Pelican White_Pelican
Western_Wood_Pewee Sayornis American_Pipit Whip_poor_Will Horned_Puffin Common_Raven
White_necked_Raven American_Redstart Geococcyx Loggerhead_Shrike Great_Grey_Shrike Baird_Sparrow
Black_throated_Sparrow Brewer_Sparrow Chipping_Sparrow Clay_colored_Sparrow House_Sparrow
Field_Sparrow Fox_Sparrow Grasshopper_Sparrow Harris_Sparrow Henslow_Sparrow Le_Conte_Sparrow
Lincoln_Sparrow Nelson_Sharp_tailed_Sparrow Savannah_Sparrow Seaside_Sparrow Song_Sparrow
Tree_Sparrow Vesper_Sparrow White_crowned_Sparrow White_throated_Sparrow Cape_Glossy_Starling
Bank_Swallow Barn_Swallow Cliff_Swallow Tree_Swallow Scarlet_Tanager Summer_Tanager Artic_Tern
Black_Tern Caspian_Tern Common_Tern Elegant_Tern Forsters_Tern Least_Tern Green_tailed_Towhee
Brown_Thrasher Sage_Thrasher Black_capped_Vireo Blue_headed_Vireo Philadelphia_Vireo Red_eyed_Vireo
Warbling_Vireo White_eyed_Vireo Yellow_throated_Vireo Bay_breasted_Warbler Black_and_white_Warbler
Black_throated_Blue_Warbler Blue_winged_Warbler Canada_Warbler Cape_May_Warbler Cerulean_Warbler
Chestnut_sided_Warbler Golden_winged_Warbler Hooded_Warbler Kentucky_Warbler Magnolia_Warbler
Mourning_Warbler Myrtle_Warbler Nashville_Warbler Orange_crowned_Warbler Palm_Warbler Pine_Warbler
Prairie_Warbler Prothonotary_Warbler Swainson_Warbler Tennessee_Warbler Wilson_Warbler
Worm_eating_Warbler Yellow_Warbler Northern_Waterthrush Louisiana_Waterthrush Bohemian_Waxwing
Cedar_Waxwing American_Three_toed_Woodpecker Pileated_Woodpecker Red_bellied_Woodpecker
Red_cockaded_Woodpecker Red_headed_Woodpecker Downy_Woodpecker Bewick_Wren Cactus_Wren Carolina_Wren
House_Wren Marsh_Wren Rock_Wren Winter_Wren Common_Yellowthroat
""".split())
CUB_CLASSES = tuple(name.replace("_", " ") for name in CUB_FOLDER_NAMES)

# CUB class numbers (1-based) of the 50 unseen species: testclasses.txt of Xian et al.'s xlsa17
# release ("proposed split" for CUB).
CUB_UNSEEN_NUMBERS = (
    4, 12, 23, 26, 28, 31, 33, 43, 45, 49, 52, 55, 70, 72, 77, 84, 87, 91, 94, 97, 98, 103, 104, 111, 113,
    119, 123, 124, 127, 130, 132, 136, 138, 139, 143, 148, 156, 157, 161, 163, 164, 165, 168, 169, 173,
    180, 188, 190, 191, 200,
)

# The archive's small text files, by file name, and what each holds per line.
_CUB_TABLES = {
    "images.txt": "image number, path under images/",
    "image_class_labels.txt": "image number, class number",
    "classes.txt": "class number, folder name",
    "bounding_boxes.txt": "image number, x, y, width, height",
    "attributes.txt": "attribute number, attribute name",
    "class_attribute_labels_continuous.txt": "one row per class: 312 percentages",
}


def _decode_cub() -> dict[str, np.ndarray]:
    (archive,) = download.ensure("cub")
    text = _read_tables(archive)
    images_of = dict(_rows(text["images.txt"], 2))
    class_of = {number: int(label) for number, label in _rows(text["image_class_labels.txt"], 2)}
    boxes = {number: tuple(map(float, rest)) for number, *rest in _rows(text["bounding_boxes.txt"], 5)}
    folders = [name for _, name in sorted(_rows(text["classes.txt"], 2), key=lambda row: int(row[0]))]
    expected = [f"{k:03d}.{name}" for k, name in enumerate(CUB_FOLDER_NAMES, start=1)]
    if folders != expected:
        raise ValueError(f"{archive.name}: classes.txt does not list CUB-200-2011's 200 species in order")
    attribute_names = [name for _, name in sorted(_rows(text["attributes.txt"], 2), key=lambda row: int(row[0]))]
    percentages = np.loadtxt(io.StringIO(text["class_attribute_labels_continuous.txt"]), ndmin=2)
    if percentages.shape != (len(folders), len(attribute_names)):
        raise ValueError(f"{archive.name}: class attribute table of shape {percentages.shape}, expected "
                         f"({len(folders)}, {len(attribute_names)})")

    order = sorted(images_of, key=int)
    position = {images_of[number]: k for k, number in enumerate(order)}
    images = np.zeros((len(order), CUB_SIZE, CUB_SIZE, 3), np.uint8)
    found = np.zeros(len(order), bool)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if not member.isfile() or "images" not in parts[:-2]:
                continue
            key = "/".join(parts[-2:])
            if key in position:
                k = position[key]
                images[k] = _bird_crop(tar.extractfile(member).read(), boxes[order[k]])
                found[k] = True
    if not found.all():
        missing = [images_of[order[k]] for k in np.flatnonzero(~found)[:3]]
        raise ValueError(
            f"{archive.name}: {int((~found).sum())} photos listed in images.txt are missing, e.g. {missing}"
        )

    labels = np.array([class_of[number] - 1 for number in order], np.int64)
    unseen = np.array(CUB_UNSEEN_NUMBERS, np.int64) - 1
    seen_photos = np.flatnonzero(~np.isin(labels, unseen))
    train, val, test = (seen_photos[part] for part in
                        stratified_split(labels[seen_photos], CUB_SEEN_FRACTIONS, seed=name_seed("cub")))
    return {
        "images": images,
        "labels": labels,
        "train": train,
        "val": val,
        "test": np.concatenate([test, np.flatnonzero(np.isin(labels, unseen))]),
        "attributes": percentages / 100.0,
        "attribute_names": np.array(attribute_names),
        "unseen": unseen,
    }


def _read_tables(archive) -> dict[str, str]:
    """The archive's text tables (one pass over the archive, photos skipped)."""
    found: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            name = PurePosixPath(member.name).name
            if member.isfile() and name in _CUB_TABLES and name not in found:
                found[name] = tar.extractfile(member).read().decode("utf-8")
    missing = sorted(set(_CUB_TABLES) - set(found))
    if missing:
        raise ValueError(f"{archive.name} lacks {', '.join(missing)}; is it CUB_200_2011.tgz?")
    return found


def _rows(content: str, width: int) -> list[list[str]]:
    """Lines split on whitespace into ``width`` fields (the last field keeps any spaces)."""
    return [line.split(maxsplit=width - 1) for line in content.splitlines() if line.strip()]


def _bird_crop(jpeg: bytes, box: tuple[float, float, float, float]) -> np.ndarray:
    """The square around a bounding box (x, y, width, height), kept inside the photo, as CUB_SIZE RGB."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as opened:
        photo = opened.convert("RGB")
    x, y, width, height = box
    side = min(max(width, height) * (1 + 2 * CUB_BOX_MARGIN), photo.width, photo.height)
    left = min(max(x + width / 2 - side / 2, 0), photo.width - side)
    top = min(max(y + height / 2 - side / 2, 0), photo.height - side)
    square = photo.resize((CUB_SIZE, CUB_SIZE), Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
    return np.asarray(square, np.uint8)


def _cub() -> Raw:
    arrays = full._arrays("cub")
    return Raw(
        arrays["images"],
        arrays["labels"],
        CUB_CLASSES,
        splits={k: arrays[k] for k in ("train", "val", "test")},
        attributes=arrays["attributes"],
        attribute_names=tuple(str(name) for name in arrays["attribute_names"]),
        unseen=tuple(int(k) for k in arrays["unseen"]),
    )


full._DECODERS["cub"] = _decode_cub

register(
    Card(
        name="cub",
        task="zero-shot",
        classes=CUB_CLASSES,
        licence="non-commercial research and educational use (Caltech; photos from Flickr, their owners' copyright); "
        "cite Wah et al. (2011)",
        source="https://www.vision.caltech.edu/datasets/cub_200_2011/ (archive on data.caltech.edu); "
        "unseen classes: Xian et al. (2018), proposed split",
        size="11,788 photos, 160x160 RGB bird crops, 200 classes (50 unseen), 312 continuous attributes",
        profile="full",
        chapters=(7,),
        like_imagenet=True,
        small=True,
        description="Fine-grained bird species described by 312 attributes; the 50 unseen species are "
        "outside ImageNet-1k, so zero-shot results are not flattered by the backbone's pre-training.",
    ),
    _cub,
)
