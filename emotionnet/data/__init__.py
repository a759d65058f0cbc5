"""Facial-expression datasets as `datasets.DatasetDict`s in one canonical label order, and robust batch decoding.

Every loader returns splits named ``train``, ``validation`` and (where the source has one) ``test`` with the columns

- ``image``: a `datasets.Image()` feature. File-based sources store absolute file paths, so images are decoded
  lazily; pixel-CSV sources (FER2013, official FERPlus) store PNG bytes.
- ``label``: a `datasets.ClassLabel` whose names are ``EXPRESSIONS[:num_classes]`` (``neutral, happiness, surprise,
  sadness, anger, disgust, fear[, contempt]``), the order of `GReFELConfig.id2label`.
- ``soft_label`` (FERPlus only): the annotators' vote distribution over the same classes (floats summing to 1).

Each source's own label ids or names are converted by an explicit table in its module (`FER2013_LABELS`,
`RAFDB_LABELS`, `FERPLUS_VOTE_COLUMNS`, `LABEL_SYNONYMS`), never by position. For 7-class output, contempt samples are dropped and
counted. What was dropped, and why, comes back in a `LoadReport`:

    dataset = load_fer_dataset("ferplus", "/data/FERPlus")                 # DatasetDict only
    dataset, report = load_fer_dataset_with_report("rafdb", "/data/RAF-DB/basic")
    print(report.summary())         # "rafdb (official basic/ layout), 7 classes: train 11043, ... dropped: ..."

One module per source (`fer2013`, `ferplus`, `rafdb`, `imagefolder`, `hub_dataset` for any `datasets` dataset),
what they share in `common`, the dispatch by name in `sources`, and batch decoding in `decoding`. The package
exports what the scripts use.

The report is also written into every split's ``info.description``, so it travels with ``save_to_disk``.

Training decodes images itself, so that one unreadable file costs one sample and not the run:

    dataset = with_raw_images(dataset)                 # examples give {"bytes", "path"} dicts, not PIL images
    loader = SafeImageLoader()
    collate = functools.partial(collate_images, loader=loader, image_size=112)
    pixels, labels, soft_labels, skipped = collate([dataset["train"][i] for i in range(8)])  # skipped: (key, reason)
"""

from .decoding import SafeImageLoader, collate_images, describe_skipped, require_readable_image, with_raw_images
from .sources import load_fer_dataset, load_fer_dataset_with_report

__all__ = [
    "SafeImageLoader",
    "collate_images",
    "describe_skipped",
    "load_fer_dataset",
    "load_fer_dataset_with_report",
    "require_readable_image",
    "with_raw_images",
]
