"""Dataset loaders on tiny fixtures in each source's real file format, and robust decoding for training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from emotionnet.data import (
    SafeImageLoader,
    collate_images,
    describe_skipped,
    load_fer_dataset,
    load_fer_dataset_with_report,
    require_readable_image,
    with_raw_images,
)
from emotionnet.data.common import (
    DROP_CONTEMPT,
    DROP_NOT_EXPRESSION,
    canonical_expression,
    with_validation_split,
)
from emotionnet.data.ferplus import DROP_NO_IMAGE_NAME, DROP_NO_VOTES, ferplus_votes_to_label
from modeling_grefel.configuration_grefel import EXPRESSIONS
from tests.fixtures_data import (
    FERPLUS_HEADER,
    pixels_text,
    write_csv,
    write_fer2013,
    write_ferplus_official,
    write_ferplus_seed,
    write_image,
    write_imagefolder,
    write_list,
    write_rafdb_official,
    write_rafdb_seed,
    write_truncated_jpeg,
)


def names(split) -> list[str]:
    """The canonical names of a split's labels, in row order."""
    return [split.features["label"].names[i] for i in split["label"]]


# ------------------------------------------------------------------------------------------------ label tables


@pytest.mark.parametrize(
    "raw, canonical",
    [("Happy", "happiness"), ("angry", "anger"), ("SAD", "sadness"), ("surprised", "surprise"),
     ("fearful", "fear"), ("disgusted", "disgust"), ("Neutral", "neutral"), ("contempt", "contempt")],
)  # fmt: skip
def test_synonyms_map_onto_canonical_names(raw, canonical):
    assert canonical_expression(raw) == canonical


def test_ferplus_majority_vote_breaks_ties_in_canonical_order():
    assert ferplus_votes_to_label([0, 0, 0, 4, 0, 0, 4, 0, 2, 0]) == (EXPRESSIONS.index("sadness"), None)


def test_ferplus_row_with_unknown_nf_majority_is_dropped():
    assert ferplus_votes_to_label([2, 0, 0, 0, 0, 0, 0, 0, 3, 5]) == (None, DROP_NOT_EXPRESSION)


# ------------------------------------------------------------------------------------------------ FER2013


@pytest.fixture
def fer2013_dir(tmp_path):
    rows = [(e, "Training") for e in range(7)] * 2 + [(3, "PublicTest"), (6, "PublicTest"), (0, "PrivateTest")]
    write_fer2013(tmp_path, rows)
    return tmp_path


def test_fer2013_usage_becomes_splits_and_ids_map_to_canonical_names(fer2013_dir):
    data = load_fer_dataset("fer2013", str(fer2013_dir))
    assert list(data) == ["train", "validation", "test"]
    assert names(data["train"])[:7] == ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
    assert names(data["validation"]) == ["happiness", "neutral"] and names(data["test"]) == ["anger"]
    assert data["train"].features["label"].names == list(EXPRESSIONS[:7])
    assert data["train"][0]["image"].size == (48, 48)


def test_fer2013_eight_classes_keeps_canonical_order(fer2013_dir):
    data, report = load_fer_dataset_with_report("fer2013", str(fer2013_dir), num_classes=8)
    assert data["train"].features["label"].names == list(EXPRESSIONS)
    assert any("no contempt" in note for note in report.notes)


def test_fer2013_wrong_pixel_count_names_file_and_line(tmp_path):
    write_fer2013(tmp_path, [(0, "Training"), (1, "Training")], pixels={1: pixels_text(5, count=2000)})
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 3: expected 2304 .* got 2000 values"):
        load_fer_dataset("fer2013", str(tmp_path))


def test_fer2013_non_numeric_pixels_name_file_and_line(tmp_path):
    write_fer2013(tmp_path, [(0, "Training")], pixels={0: "1 2 x"})
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 2: .*non-numeric"):
        load_fer_dataset("fer2013", str(tmp_path))


def test_fer2013_unknown_emotion_id_names_line(tmp_path):
    write_fer2013(tmp_path, [(0, "Training"), (7, "Training")])
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 3: expected an emotion id 0-6 .* got 7"):
        load_fer_dataset("fer2013", str(tmp_path))


def test_fer2013_row_with_missing_field_names_line(tmp_path):
    path = write_fer2013(tmp_path, [(0, "Training")])
    with open(path, "a") as handle:
        handle.write("3,1 2 3\n")
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 3: expected 3 comma-separated fields"):
        load_fer_dataset("fer2013", str(tmp_path))


def test_fer2013_unknown_usage_names_line(tmp_path):
    write_fer2013(tmp_path, [(0, "Training"), (1, "Holdout")])
    with pytest.raises(ValueError, match=r"fer2013\.csv, line 3: expected Usage .* got 'Holdout'"):
        load_fer_dataset("fer2013", str(tmp_path))


def test_fer2013_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fer2013\.csv"):
        load_fer_dataset("fer2013", str(tmp_path))


def test_fer2013_without_validation_rows_carves_stratified_validation(tmp_path):
    write_fer2013(tmp_path, [(e, "Training") for e in range(7)] * 4)
    data, report = load_fer_dataset_with_report("fer2013", str(tmp_path), validation_fraction=0.25)
    assert len(data["validation"]) == 7 and sorted(data["validation"]["label"]) == list(range(7))
    assert len(data["train"]) == 21 and any("carved" in note for note in report.notes)


# ------------------------------------------------------------------------------------------------ FERPlus


FERPLUS_ROWS = [
    ("Training", "fer0.png", [8, 1, 0, 0, 0, 0, 0, 1, 0, 0]),  # neutral
    ("Training", "fer1.png", [0, 9, 0, 0, 0, 0, 0, 0, 1, 0]),  # happiness
    ("Training", "fer2.png", [0, 0, 0, 0, 0, 0, 0, 0, 4, 6]),  # NF majority: dropped
    ("Training", "", [0, 0, 0, 0, 0, 0, 0, 0, 0, 10]),  # removed by FERPlus: dropped
    ("Training", "fer4.png", [1, 0, 0, 0, 0, 0, 0, 6, 3, 0]),  # contempt
    ("Training", "fer5.png", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),  # no votes: dropped
    ("PublicTest", "fer6.png", [0, 0, 7, 0, 0, 0, 3, 0, 0, 0]),  # surprise
    ("PrivateTest", "fer7.png", [0, 0, 0, 5, 5, 0, 0, 0, 0, 0]),  # sadness (tie with anger)
]


def test_ferplus_official_majority_labels_and_splits(tmp_path):
    write_ferplus_official(tmp_path, FERPLUS_ROWS)
    data = load_fer_dataset("ferplus", str(tmp_path))
    assert names(data["train"]) == ["neutral", "happiness", "contempt"]
    assert names(data["validation"]) == ["surprise"] and names(data["test"]) == ["sadness"]
    assert data["train"].features["label"].names == list(EXPRESSIONS)


def test_ferplus_official_soft_labels_are_vote_shares_summing_to_one(tmp_path):
    write_ferplus_official(tmp_path, FERPLUS_ROWS)
    data = load_fer_dataset("ferplus", str(tmp_path))
    soft = np.asarray(data["train"]["soft_label"])
    assert soft.shape == (3, 8) and np.allclose(soft.sum(axis=1), 1.0)
    assert soft[0].tolist() == pytest.approx([0.8, 0.1, 0, 0, 0, 0, 0, 0.1])


def test_ferplus_official_counts_dropped_rows(tmp_path):
    write_ferplus_official(tmp_path, FERPLUS_ROWS)
    _, report = load_fer_dataset_with_report("ferplus", str(tmp_path))
    assert report.dropped["train"] == {DROP_NOT_EXPRESSION: 1, DROP_NO_IMAGE_NAME: 1, DROP_NO_VOTES: 1}
    assert "1 no emotion votes" in report.summary()


def test_ferplus_seven_classes_drop_contempt_and_renormalise(tmp_path):
    write_ferplus_official(tmp_path, FERPLUS_ROWS)
    data, report = load_fer_dataset_with_report("ferplus", str(tmp_path), num_classes=7)
    assert names(data["train"]) == ["neutral", "happiness"]
    assert report.dropped["train"][DROP_CONTEMPT] == 1 and sum(sum(c.values()) for c in report.dropped.values()) == 4
    soft = np.asarray(data["train"]["soft_label"])
    assert soft.shape == (2, 7) and np.allclose(soft.sum(axis=1), 1.0)
    assert soft[0].tolist() == pytest.approx([8 / 9, 1 / 9, 0, 0, 0, 0, 0])


def test_ferplus_official_misaligned_files_name_line(tmp_path):
    write_ferplus_official(tmp_path, FERPLUS_ROWS)
    rows = [(("PublicTest" if i == 1 else usage), name, *votes) for i, (usage, name, votes) in enumerate(FERPLUS_ROWS)]
    write_csv(tmp_path / "fer2013new.csv", FERPLUS_HEADER, rows)
    with pytest.raises(ValueError, match=r"fer2013new\.csv, line 3: expected Usage 'Training'.*not row-aligned"):
        load_fer_dataset("ferplus", str(tmp_path))


def test_ferplus_official_needs_fer2013_csv(tmp_path):
    write_ferplus_official(tmp_path, FERPLUS_ROWS)
    (tmp_path / "fer2013.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"fer2013\.csv"):
        load_fer_dataset("ferplus", str(tmp_path))


def test_ferplus_seed_vote_columns(tmp_path):
    header = ["image", *FERPLUS_HEADER[2:]]
    write_ferplus_seed(tmp_path, {
        "train": (header, [("a.png", 0, 6, 0, 0, 0, 0, 0, 4, 0, 0), ("b.png", 0, 0, 0, 0, 0, 0, 0, 0, 0, 9)]),
        "val": (header, [("c.png", 0, 0, 0, 0, 0, 10, 0, 0, 0, 0)]),
    })  # fmt: skip
    data, report = load_fer_dataset_with_report("ferplus", str(tmp_path))
    assert names(data["train"]) == ["happiness"] and names(data["validation"]) == ["disgust"]
    assert data["train"]["soft_label"][0] == pytest.approx([0, 0.6, 0, 0, 0, 0, 0, 0.4])
    assert report.dropped["train"] == {DROP_NOT_EXPRESSION: 1}


def test_ferplus_seed_label_column_accepts_names_and_indices(tmp_path):
    write_ferplus_seed(tmp_path, {
        "train": (["image_path", "label"], [("a.png", "happy"), ("b.png", "7"), ("c.png", "9"), ("d.png", "2")]),
        "val": (["image_path", "label"], [("e.png", "Sadness")]),
    })  # fmt: skip
    data, report = load_fer_dataset_with_report("ferplus", str(tmp_path))
    assert names(data["train"]) == ["happiness", "contempt", "surprise"]
    assert data["train"]["soft_label"][0] == [0, 1, 0, 0, 0, 0, 0, 0]
    assert report.dropped["train"] == {DROP_NOT_EXPRESSION: 1}


def test_ferplus_seed_missing_image_names_csv_line(tmp_path):
    write_ferplus_seed(tmp_path, {"train": (["image", "label"], [("a.png", "0")]),
                                  "val": (["image", "label"], [("b.png", "1")])})  # fmt: skip
    write_csv(tmp_path / "val_ferplus.csv", ["image", "label"], [("b.png", "1"), ("gone.png", "1")])
    with pytest.raises(ValueError, match=r"val_ferplus\.csv, line 3: expected the image 'gone\.png'"):
        load_fer_dataset("ferplus", str(tmp_path))


def test_ferplus_seed_unknown_label_names_csv_line(tmp_path):
    write_ferplus_seed(tmp_path, {"train": (["image", "label"], [("a.png", "0"), ("b.png", "bored")]),
                                  "val": (["image", "label"], [("c.png", "1")])})  # fmt: skip
    with pytest.raises(ValueError, match=r"train_ferplus\.csv, line 3: .*got 'bored'"):
        load_fer_dataset("ferplus", str(tmp_path))


def test_ferplus_seed_without_image_column_names_header(tmp_path):
    write_ferplus_seed(tmp_path, {"train": (["picture", "label"], [("a.png", "0")]),
                                  "val": (["picture", "label"], [("b.png", "1")])})  # fmt: skip
    with pytest.raises(ValueError, match=r"train_ferplus\.csv, line 1: expected an image-path column"):
        load_fer_dataset("ferplus", str(tmp_path))


def test_ferplus_empty_split_file_is_an_error(tmp_path):
    write_ferplus_seed(tmp_path, {"train": (["image", "label"], [("a.png", "0")]),
                                  "val": (["image", "label"], [])})  # fmt: skip
    with pytest.raises(ValueError, match=r"val_ferplus\.csv: the validation split has no usable examples"):
        load_fer_dataset("ferplus", str(tmp_path))


def test_ferplus_folder_without_known_files_says_what_it_expects(tmp_path):
    with pytest.raises(FileNotFoundError, match="fer2013new.csv.*train_ferplus.csv"):
        load_fer_dataset("ferplus", str(tmp_path))


# ------------------------------------------------------------------------------------------------ RAF-DB


def test_rafdb_seed_ids_follow_the_official_table(tmp_path):
    ids = {str(i): f"train_{i}.jpg" for i in range(1, 8)}
    write_rafdb_seed(tmp_path, {"train": [(name, i) for i, name in ids.items()] * 1,
                                "val": [("val_1.jpg", "4"), ("val_2.jpg", "happy")],
                                "test": [("test_1.jpg", "7")]})  # fmt: skip
    data = load_fer_dataset("rafdb", str(tmp_path))
    assert names(data["train"]) == ["surprise", "fear", "disgust", "happiness", "sadness", "anger", "neutral"]
    assert names(data["validation"]) == ["happiness", "happiness"] and names(data["test"]) == ["neutral"]
    assert data["train"].features["label"].names == list(EXPRESSIONS[:7])


def test_rafdb_seed_zero_label_names_line_and_fix(tmp_path):
    write_rafdb_seed(tmp_path, {"train": [("a.jpg", "1"), ("b.jpg", "0")], "val": [("c.jpg", "2")]})
    with pytest.raises(ValueError, match=r"train_list\.txt, line 2: expected a RAF-DB label id 1-7.*got 0.*names"):
        load_fer_dataset("rafdb", str(tmp_path))


def test_rafdb_seed_malformed_line_is_named(tmp_path):
    write_rafdb_seed(tmp_path, {"train": [("a.jpg", "1")], "val": [("c.jpg", "2")]})
    write_list(tmp_path / "val_list.txt", ["c.jpg 2", "c.jpg"])
    with pytest.raises(ValueError, match=r"val_list\.txt, line 2: expected 'image_name label'"):
        load_fer_dataset("rafdb", str(tmp_path))


def test_rafdb_official_layout_reads_aligned_images_and_carves_validation(tmp_path):
    entries = [(f"train_{i:05d}.jpg", 1 + i % 7) for i in range(14)] + [("test_0001.jpg", 4)]
    basic = write_rafdb_official(tmp_path, entries)
    data, report = load_fer_dataset_with_report("rafdb", str(tmp_path))
    assert report.layout == "official basic/ layout"
    assert report.split_sizes == {"train": 7, "validation": 7, "test": 1}
    assert names(data["test"]) == ["happiness"]
    assert data["test"].cast_column("image", Image(decode=False))[0]["image"]["path"] == str(
        (basic / "Image" / "aligned" / "test_0001_aligned.jpg").resolve()
    )


def test_rafdb_official_missing_aligned_image_names_line(tmp_path):
    basic = write_rafdb_official(tmp_path, [("train_00001.jpg", 1), ("train_00002.jpg", 2)])
    (basic / "Image" / "aligned" / "train_00002_aligned.jpg").unlink()
    with pytest.raises(ValueError, match=r"list_patition_label\.txt, line 2: expected the image 'train_00002_aligned"):
        load_fer_dataset("rafdb", str(basic))


# ------------------------------------------------------------------------------------------------ image folders


def test_imagefolder_maps_synonyms_and_split_folders(tmp_path):
    write_imagefolder(tmp_path, {"happy": 2, "angry": 1, "sad": 1, "surprised": 1, "fearful": 1, "disgusted": 1,
                                 "neutral": 1}, split="train")  # fmt: skip
    write_imagefolder(tmp_path, {"happy": 1, "sad": 1}, split="val")
    data, report = load_fer_dataset_with_report("imagefolder", str(tmp_path))
    assert report.num_classes == 7 and report.split_sizes == {"train": 8, "validation": 2}
    assert sorted(names(data["train"])) == sorted(["happiness", "happiness", "anger", "sadness", "surprise", "fear",
                                                   "disgust", "neutral"])  # fmt: skip
    assert sorted(names(data["validation"])) == ["happiness", "sadness"]


def test_imagefolder_with_contempt_defaults_to_eight_classes(tmp_path):
    write_imagefolder(tmp_path, {"happy": 2, "contempt": 2})
    data = load_fer_dataset("imagefolder", str(tmp_path))
    assert data["train"].features["label"].names == list(EXPRESSIONS)


def test_imagefolder_seven_classes_drop_and_count_contempt(tmp_path):
    write_imagefolder(tmp_path, {"happy": 2, "sad": 2, "contempt": 3})
    data, report = load_fer_dataset_with_report("imagefolder", str(tmp_path), num_classes=7)
    assert "contempt" not in names(data["train"]) + names(data["validation"])
    assert sum(c[DROP_CONTEMPT] for c in report.dropped.values()) == 3


def test_imagefolder_lists_every_unmappable_class_name(tmp_path):
    write_imagefolder(tmp_path, {"happy": 1, "bored": 1, "sleepy": 1})
    with pytest.raises(ValueError, match=r"cannot map the label names \['bored', 'sleepy'\]"):
        load_fer_dataset("imagefolder", str(tmp_path))


# What datasets' imagefolder builder gets wrong on these layouts (emotionnet/data/imagefolder.py says why it is not used).


def test_imagefolder_labels_nested_images_by_their_class_folder(tmp_path):
    for class_name in ("happy", "sad"):
        for session in ("session1", "session2"):
            write_image(tmp_path / class_name / session / "0.png")
    data = load_fer_dataset("imagefolder", str(tmp_path), validation_fraction=0.5)
    assert sorted(names(data["train"]) + names(data["validation"])) == ["happiness"] * 2 + ["sadness"] * 2


def test_imagefolder_reads_fer2013_split_folder_names_as_splits(tmp_path):
    for split in ("Training", "PublicTest", "PrivateTest"):
        write_imagefolder(tmp_path, {"happy": 1, "sad": 1}, split=split)
    _, report = load_fer_dataset_with_report("imagefolder", str(tmp_path))
    assert report.split_sizes == {"train": 2, "validation": 2, "test": 2}


def test_imagefolder_keeps_folder_labels_next_to_a_metadata_file(tmp_path):
    write_imagefolder(tmp_path, {"happy": 2, "sad": 2})
    (tmp_path / "metadata.csv").write_text("file_name,note\nhappy/0.png,a\n")
    data = load_fer_dataset("imagefolder", str(tmp_path), validation_fraction=0.5)
    assert sorted(names(data["train"]) + names(data["validation"])) == ["happiness"] * 2 + ["sadness"] * 2


# ------------------------------------------------------------------------------------------------ datasets on disk / Hub


def string_label_dataset(tmp_path, labels_by_split: dict[str, list[str]]) -> str:
    """A `save_to_disk` DatasetDict with columns ``img`` (image files) and ``emotion`` (strings)."""
    features = Features({"img": Image(), "emotion": Value("string")})
    splits = {}
    for split, labels in labels_by_split.items():
        paths = [str(write_image(tmp_path / "files" / split / f"{i}.png", value=30 * i)) for i in range(len(labels))]
        splits[split] = Dataset.from_dict({"img": paths, "emotion": labels}, features=features)
    folder = tmp_path / "saved"
    DatasetDict(splits).save_to_disk(str(folder))
    return str(folder)


def test_load_from_disk_with_string_labels_and_custom_columns(tmp_path):
    folder = string_label_dataset(tmp_path, {"train": ["happy", "Angry", "sad", "happy"], "valid": ["surprised"]})
    data = load_fer_dataset(folder, image_column="img", label_column="emotion")
    assert data["train"].column_names == ["image", "label"]
    assert names(data["train"]) == ["happiness", "anger", "sadness", "happiness"]
    assert names(data["validation"]) == ["surprise"] and data["train"][0]["image"].size == (8, 8)


def test_load_from_disk_lists_unmappable_string_labels(tmp_path):
    folder = string_label_dataset(tmp_path, {"train": ["happy", "meh", "bored"]})
    with pytest.raises(ValueError, match=r"\['bored', 'meh'\]"):
        load_fer_dataset(folder, image_column="img", label_column="emotion")


def test_load_from_disk_classlabel_in_another_order_is_remapped(tmp_path):
    features = Features({"image": Image(), "label": ClassLabel(names=["angry", "happy", "contempt"])})
    paths = [str(write_image(tmp_path / f"{i}.png")) for i in range(5)]
    labels = [0, 1, 2, 0, 1]
    Dataset.from_dict({"image": paths, "label": labels}, features=features).save_to_disk(str(tmp_path / "d"))
    data, report = load_fer_dataset_with_report(str(tmp_path / "d"), num_classes=7, validation_fraction=0.5)
    assert sorted(names(data["train"]) + names(data["validation"])) == ["anger", "anger", "happiness", "happiness"]
    assert sum(c[DROP_CONTEMPT] for c in report.dropped.values()) == 1


def test_load_from_disk_refuses_unnamed_integer_labels(tmp_path):
    paths = [str(write_image(tmp_path / f"{i}.png")) for i in range(2)]
    features = Features({"image": Image(), "label": Value("int64")})
    Dataset.from_dict({"image": paths, "label": [0, 1]}, features=features).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ValueError, match="ClassLabel"):
        load_fer_dataset(str(tmp_path / "d"))


def test_load_from_disk_missing_column_names_the_argument(tmp_path):
    folder = string_label_dataset(tmp_path, {"train": ["happy"]})
    with pytest.raises(ValueError, match=r"expected a column 'image' \(image_column\)"):
        load_fer_dataset(folder, label_column="emotion")


def test_unknown_dataset_name_fails_with_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="neither|expected one of"):
        load_fer_dataset(str(tmp_path / "no-such-dataset"))


# ------------------------------------------------------------------------------------------------ entry point


def test_named_source_without_data_dir_asks_for_it():
    with pytest.raises(ValueError, match="data_dir"):
        load_fer_dataset("rafdb")


def test_num_classes_other_than_seven_or_eight_is_refused(fer2013_dir):
    with pytest.raises(ValueError, match="num_classes=5"):
        load_fer_dataset("fer2013", str(fer2013_dir), num_classes=5)


def test_report_travels_in_info_description(fer2013_dir):
    data, report = load_fer_dataset_with_report("fer2013", str(fer2013_dir))
    assert data["train"].info.description == report.summary()
    assert report.summary().startswith("fer2013 (fer2013.csv), 7 classes")


def test_synthetic_through_the_entry_point_is_marked_synthetic(monkeypatch):
    import emotionnet.synthetic

    calls = []
    make = emotionnet.synthetic.make_synthetic_faces

    def small(**kwargs):  # the default size takes seconds; the entry point's wiring is what is tested here
        calls.append(kwargs)
        return make(num_per_class=2, image_size=32, **kwargs)

    monkeypatch.setattr(emotionnet.synthetic, "make_synthetic_faces", small)
    data, report = load_fer_dataset_with_report("synthetic", num_classes=7, seed=5)
    assert calls == [{"num_classes": 7, "seed": 5}]
    assert report.synthetic and report.source == "synthetic-faces" and report.split_sizes["train"] == 14
    assert data["train"].features["label"].names == list(EXPRESSIONS[:7])


def test_with_validation_split_is_stratified_and_deterministic():
    features = Features({"image": Image(), "label": ClassLabel(names=list(EXPRESSIONS))})
    image = PILImage.new("RGB", (4, 4))
    train = Dataset.from_dict({"image": [image] * 32, "label": [i % 8 for i in range(32)]}, features=features)
    first = with_validation_split(DatasetDict({"train": train}), 0.25, seed=3)
    again = with_validation_split(DatasetDict({"train": train}), 0.25, seed=3)
    assert sorted(first["validation"]["label"]) == list(range(8)) and len(first["train"]) == 24
    assert list(first["validation"]["label"]) == list(again["validation"]["label"])
    assert with_validation_split(first, 0.5) is first


def test_carved_validation_takes_one_of_a_small_class_and_leaves_a_single_example_in_train():
    # Where datasets' train_test_split(stratify_by_column="label") raises or leaves the small class out (common.py).
    features = Features({"image": Image(), "label": ClassLabel(names=list(EXPRESSIONS))})
    image = PILImage.new("RGB", (4, 4))
    labels = [0] * 20 + [1] * 20 + [2] * 2 + [3]
    train = Dataset.from_dict({"image": [image] * len(labels), "label": labels}, features=features)
    carved = with_validation_split(DatasetDict({"train": train}), 0.1, seed=0)
    assert sorted(carved["validation"]["label"]) == [0, 0, 1, 1, 2]
    assert 3 in carved["train"]["label"] and len(carved["train"]) == len(labels) - 5


# ------------------------------------------------------------------------------------------------ robust decoding


@pytest.fixture
def bad_files(tmp_path):
    good = write_image(tmp_path / "good.png")
    truncated = write_truncated_jpeg(tmp_path / "truncated.jpg")
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    return good, truncated, not_image


def test_safe_loader_skips_truncated_and_non_image_files(bad_files):
    good, truncated, not_image = bad_files
    loader = SafeImageLoader()
    results = [loader(str(good)), loader({"bytes": None, "path": str(truncated)}), loader(str(not_image))]
    assert results[0].mode == "RGB" and results[1] is None and results[2] is None
    assert [key for key, _ in loader.skipped] == [str(truncated), str(not_image)]
    assert "could not be decoded" in loader.skipped[0][1] and "truncated" in loader.skipped[0][1]
    assert loader.skipped[1][1] == f"{str(not_image)!r} is not an image file PIL can read; pass a JPEG, PNG, WebP, GIF, BMP or TIFF image."
    assert loader.num_seen == 3


def test_collate_drops_unreadable_examples_and_returns_them(bad_files):
    good, truncated, not_image = bad_files
    examples = [{"image": str(good), "label": 1}, {"image": str(truncated), "label": 2},
                {"image": {"bytes": not_image.read_bytes(), "path": None}, "label": 3, "__key__": 17},
                {"image": PILImage.new("L", (5, 9)), "label": 4}]  # fmt: skip
    pixels, labels, soft, skipped = collate_images(examples, SafeImageLoader(), 16)
    assert pixels.shape == (2, 3, 16, 16) and pixels.dtype == torch.uint8
    assert labels.tolist() == [1, 4] and soft is None
    assert [key for key, _ in skipped] == [str(truncated), 17]


def test_collate_stacks_soft_labels():
    examples = [{"image": PILImage.new("RGB", (8, 8)), "label": 0, "soft_label": [0.5, 0.5] + [0.0] * 6}] * 3
    _, _, soft, skipped = collate_images(examples, SafeImageLoader(), 8)
    assert soft.shape == (3, 8) and torch.allclose(soft.sum(dim=1), torch.ones(3)) and skipped == []


def test_raw_images_let_the_loader_skip_a_truncated_file_in_a_dataset(tmp_path, bad_files):
    good, truncated, _ = bad_files
    names_ = list(EXPRESSIONS)
    features = Features({"image": Image(), "label": ClassLabel(names=names_)})
    dataset = with_raw_images(Dataset.from_dict({"image": [str(good), str(truncated)], "label": [0, 1]}, features))
    loader = SafeImageLoader()
    pixels, labels, _, skipped = collate_images([dataset[0], dataset[1]], loader, 8)
    assert labels.tolist() == [0] and len(skipped) == 1 and loader.num_seen == 2


def test_describe_skipped_names_the_first_few_and_counts_the_rest():
    skipped = [(f"{i}.png", "OSError: broken") for i in range(5)]
    assert describe_skipped(skipped[:1]) == "1 image: 0.png (OSError: broken)"
    assert describe_skipped(skipped, limit=2, reasons=False) == "5 images: 0.png, 1.png, and 3 more"


def test_require_readable_image_stops_at_the_first_readable_one(bad_files):
    good, truncated, not_image = bad_files
    features = Features({"image": Image(), "label": ClassLabel(names=list(EXPRESSIONS))})
    dataset = with_raw_images(Dataset.from_dict({"image": [str(truncated), str(good), str(not_image)],
                                                 "label": [0, 1, 2]}, features))
    require_readable_image(dataset, "the training set")
    unreadable = dataset.select([0, 2])
    with pytest.raises(ValueError, match=r"the training set: none of its images can be read \(2 images: ") as err:
        require_readable_image(unreadable, "the training set")
    assert str(truncated) in str(err.value) and str(not_image) in str(err.value)
