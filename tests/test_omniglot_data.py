"""Omniglot shipped in the package (metafast.datasets) and the image augmentation of
Classification families: the shipped arrays and their provenance, the conversion from the
original zips (when METAFAST_OMNIGLOT_ZIPS names their folder), the preprocessing, rotations
and shifts drawn natively and exactly, episodes within an alphabet, the refusals, and a short
learning test on held-out alphabets."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import metafast as mf
from metafast.datasets import convert_omniglot, omniglot, packed_arrays
from metafast.datasets.image_resize import lanczos_matrix, resize

DATA = Path(omniglot.__file__).parent / "data"
ZIPS = os.environ.get("METAFAST_OMNIGLOT_ZIPS")
HELD_OUT = ["Japanese_(katakana)", "Sanskrit", "Tagalog"]
# The zips' SHA-256 as the Omniglot repository publishes them (commit 057f034).
ZIP_SHA256 = {"images_background_small1.zip": "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
              "images_background_small2.zip": "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f"}
needs_zips = pytest.mark.skipif(not ZIPS or not os.path.isdir(ZIPS),
                                reason="METAFAST_OMNIGLOT_ZIPS does not name the folder of Omniglot's minimal zips")


@pytest.fixture(scope="module")
def both():
    return mf.datasets.load_omniglot("both")


# --- the shipped files -------------------------------------------------------------------


def test_shipped_file_and_arrays_match_their_recorded_checksums():
    provenance = json.loads((DATA / "provenance.json").read_text())
    assert provenance["zips"] == ZIP_SHA256
    (name, digest), = provenance["file"].items()
    assert hashlib.sha256((DATA / name).read_bytes()).hexdigest() == digest
    assert (DATA / name).stat().st_size < 600_000  # a few hundred KB
    metadata, arrays = packed_arrays.unpack(DATA / name, digest)
    assert {k: packed_arrays.array_sha256(v) for k, v in arrays.items()} == provenance["arrays"]
    assert arrays["ink"].shape == (4840, (105 * 105 + 7) // 8) and arrays["ink"].dtype == np.uint8
    assert arrays["character"].shape == arrays["drawer"].shape == (4840,)
    assert len(metadata["characters"]) == provenance["characters"] == 242
    assert metadata["subsets"] == {"small1": ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"],
                                   "small2": ["Greek", "Japanese_(katakana)", "Latin", "Sanskrit", "Tagalog"]}


def test_license_and_citation_ship_with_the_data():
    assert "MIT" in (DATA / "OMNIGLOT-LICENSE").read_text() and "Brenden Lake" in (DATA / "OMNIGLOT-LICENSE").read_text()
    provenance = json.loads((DATA / "provenance.json").read_text())
    assert "Science, 350(6266), 1332-1338" in provenance["citation"]
    assert "Science, 350(6266), 1332-1338" in (DATA / "OMNIGLOT.md").read_text()


def test_a_damaged_file_is_refused(tmp_path):
    data = bytearray((DATA / "omniglot.xz").read_bytes())
    data[1000] ^= 1
    (tmp_path / "omniglot.xz").write_bytes(bytes(data))
    digest = json.loads((DATA / "provenance.json").read_text())["file"]["omniglot.xz"]
    with pytest.raises(OSError, match="damaged"):
        packed_arrays.unpack(tmp_path / "omniglot.xz", digest)


@needs_zips
def test_the_conversion_reproduces_the_shipped_files_bit_for_bit(tmp_path):
    convert_omniglot.main([ZIPS, "--out", str(tmp_path)])
    assert (tmp_path / "omniglot.xz").read_bytes() == (DATA / "omniglot.xz").read_bytes()
    assert (tmp_path / "provenance.json").read_bytes() == (DATA / "provenance.json").read_bytes()


@needs_zips
def test_load_omniglot_images_on_the_zips_equals_the_shipped_set(both):
    read = mf.datasets.load_omniglot_images(ZIPS)
    assert read.characters == both.characters
    for name in ("images", "labels", "alphabets", "drawers"):
        assert np.array_equal(getattr(read, name), getattr(both, name)), name


# --- loading and preprocessing ------------------------------------------------------------


@pytest.mark.parametrize("subset, images, characters, alphabets", [
    ("small1", 2720, 136, ("Balinese", "Early_Aramaic", "Greek", "Korean", "Latin")),
    ("small2", 3120, 156, ("Greek", "Japanese_(katakana)", "Latin", "Sanskrit", "Tagalog")),
    ("both", 4840, 242, ("Balinese", "Early_Aramaic", "Greek", "Japanese_(katakana)", "Korean", "Latin", "Sanskrit",
                         "Tagalog")),
])
def test_load_omniglot_subsets(subset, images, characters, alphabets):
    data = mf.datasets.load_omniglot(subset)
    assert data.images.shape == (images, 1, 28, 28) and data.images.dtype == np.float32
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    assert len(data.characters) == characters and data.alphabet_names == alphabets
    assert data.labels.dtype == np.int64 and np.array_equal(np.unique(data.labels), np.arange(characters))
    assert np.array_equal(np.bincount(data.labels), np.full(characters, 20))  # 20 drawers per character
    assert set(data.drawers.tolist()) == set(range(1, 21))
    assert all(data.characters[c].split("/")[0] == a for c, a in zip(data.labels, data.alphabets))
    assert list(data.characters) == sorted(data.characters)


def test_both_holds_greek_and_latin_once_and_the_same_images_as_the_halves(both):
    small1, small2 = mf.datasets.load_omniglot("small1"), mf.datasets.load_omniglot("small2")
    for part in (small1, small2):
        for c, name in enumerate(part.characters):
            mine, theirs = part.images[part.labels == c], both.images[both.labels == both.characters.index(name)]
            assert np.array_equal(mine, theirs)
    assert len(set(small1.characters) & set(small2.characters)) == 24 + 26


def test_loaded_arrays_are_the_callers_own():
    first = mf.datasets.load_omniglot("small1")
    first.images[:] = 7
    first.labels[:] = 0
    again = mf.datasets.load_omniglot("small1")
    assert again.images.max() <= 1.0 and again.labels.max() == 135


def test_preprocessing_is_lanczos_then_one_minus_value():
    rng = np.random.default_rng(3)
    paper = rng.random((3, 105, 105)) > 0.1
    matrix = lanczos_matrix(105, 28)
    assert np.allclose(matrix.sum(axis=1), 1.0, atol=1e-14)
    expected = np.clip(1.0 - np.einsum("ij,njk,lk->nil", matrix, paper.astype(float), matrix), 0, 1)
    assert np.allclose(omniglot.preprocess(paper)[:, 0], expected, atol=1e-7)
    assert np.array_equal(omniglot.preprocess(np.ones((1, 105, 105), bool)), np.zeros((1, 1, 28, 28), np.float32))


def test_the_filter_is_pillows_lanczos():
    image_module = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    images = (rng.random((4, 105, 105)) > 0.8).astype(np.float32)
    pillow = np.stack([np.asarray(image_module.fromarray(x).resize((28, 28), image_module.LANCZOS)) for x in images])
    assert np.abs(resize(images, 28) - pillow).max() < 1e-6


@pytest.mark.parametrize("subset", ["", "small3", None, 1])
def test_load_omniglot_refuses_an_unknown_subset(subset):
    with pytest.raises(ValueError, match="subset must be one of"):
        mf.datasets.load_omniglot(subset)


def test_load_omniglot_images_reads_a_folder(tmp_path):
    image_module = pytest.importorskip("PIL.Image")
    for alphabet, character, drawer in [("Aa", 1, 1), ("Aa", 1, 2), ("Aa", 2, 1), ("Bb", 1, 1)]:
        folder = tmp_path / "images_evaluation" / alphabet / f"character{character:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.ones((105, 105), bool)
        pixels[10 * character:10 * character + 5, 10 * drawer:60] = False
        image_module.fromarray(pixels).save(folder / f"0{character}00_{drawer:02d}.png")
    data = mf.datasets.load_omniglot_images(tmp_path)
    assert data.characters == ("Aa/character01", "Aa/character02", "Bb/character01")
    assert data.labels.tolist() == [0, 0, 1, 2] and data.drawers.tolist() == [1, 2, 1, 1]
    assert data.alphabets.tolist() == ["Aa", "Aa", "Aa", "Bb"]
    assert data.images.shape == (4, 1, 28, 28) and data.images[0].max() > 0.5


def test_load_omniglot_images_refusals(tmp_path):
    with pytest.raises(ValueError, match="folder or a zip"):
        mf.datasets.load_omniglot_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images laid out"):
        mf.datasets.load_omniglot_images(tmp_path)
    (tmp_path / "A" / "character01").mkdir(parents=True)
    (tmp_path / "A" / "character01" / "0001_01.png").write_bytes(b"not a png")
    pytest.importorskip("PIL")
    with pytest.raises(ValueError, match="not a readable image"):
        mf.datasets.load_omniglot_images(tmp_path)


# --- class splits by alphabet ------------------------------------------------------------


def test_split_alphabets_gives_disjoint_class_sets(both):
    train, test = both.split_alphabets(omniglot_subset("small1"), HELD_OUT)
    assert not set(train) & set(test)
    assert len(train) == 136 and len(test) == 47 + 42 + 17
    assert {both.characters[c].split("/")[0] for c in test} == set(HELD_OUT)
    assert np.array_equal(both.classes("Tagalog"), both.split_alphabets("Tagalog")[0])
    with pytest.raises(ValueError, match="disjoint.*Greek"):
        both.split_alphabets(["Greek", "Latin"], ["Greek"])
    with pytest.raises(ValueError, match="alphabets must name some of"):
        both.classes(["Klingon"])


def omniglot_subset(name):
    return mf.datasets.omniglot_subsets()[name]


# --- rotations, shifts and episodes within a group, drawn natively ----------------------------


def asymmetric_images(classes=6, per_class=4, side=9, border=0, seed=0):
    """Images no quarter turn or shift maps onto another: random values inside a border of 0."""
    rng = np.random.default_rng(seed)
    images = np.zeros((classes * per_class, 1, side, side))
    images[:, :, border:side - border, border:side - border] = rng.random((classes * per_class, 1, side - 2 * border,
                                                                           side - 2 * border)) + 0.5
    return images, np.repeat(np.arange(classes), per_class)


def shifted(image, down, right):
    out = np.zeros_like(image)
    n = image.shape[-1]
    out[..., max(down, 0):n + min(down, 0), max(right, 0):n + min(right, 0)] = \
        image[..., max(-down, 0):n + min(-down, 0), max(-right, 0):n + min(-right, 0)]
    return out


def source_of(drawn, images, max_shift=0):
    """Every (row, turns, down, right) that makes ``drawn`` from ``images``."""
    return [(row, k, dy, dx) for row in range(len(images)) for k in range(4)
            for dy in range(-max_shift, max_shift + 1) for dx in range(-max_shift, max_shift + 1)
            if np.array_equal(shifted(np.rot90(images[row], k, axes=(1, 2)), dy, dx), drawn)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_rotations_are_exact_quarter_turns_each_a_class_of_its_own(dtype):
    images, labels = asymmetric_images()
    family = mf.tasks.Classification(images, labels, ways=3, shots=1, query=2, rotations=4)
    batch = family.sample(40, seed=5, dtype=dtype)
    seen_turns = set()
    for t in range(batch.num_tasks):
        x = np.concatenate([batch.x_support[t], batch.x_query[t]]).reshape(-1, 1, 9, 9)
        y = np.concatenate([batch.y_support[t], batch.y_query[t]])
        classes = {}
        for image, label in zip(x, y):
            (row, k, _, _), = source_of(image, images.astype(dtype))
            classes.setdefault(int(label), set()).add((int(labels[row]), k))
        assert all(len(v) == 1 for v in classes.values())          # one (character, turn) per class
        assert len({next(iter(v)) for v in classes.values()}) == 3  # distinct classes
        seen_turns |= {k for v in classes.values() for _, k in v}
    assert seen_turns == {0, 1, 2, 3}


def test_two_turns_of_one_character_can_share_an_episode():
    images, labels = asymmetric_images(classes=2)
    family = mf.tasks.Classification(images, labels, ways=8, shots=1, query=1, rotations=4)  # 2 x 4 classes
    batch = family.sample(2, seed=0)
    x = batch.x_support[0].reshape(-1, 1, 9, 9)
    found = sorted((int(labels[row]), k) for image in x for (row, k, _, _) in source_of(image, images))
    assert found == [(c, k) for c in range(2) for k in range(4)]


def test_shifts_move_images_by_at_most_shift_pixels_with_zeros():
    images, labels = asymmetric_images(side=11, border=2)
    family = mf.tasks.Classification(images, labels, ways=2, shots=2, query=2, shift=2)
    batch = family.sample(10, seed=1)
    offsets = set()
    for image in batch.x_support.reshape(-1, 1, 11, 11):
        (row, k, dy, dx), = source_of(image, images, max_shift=2)
        assert k == 0
        offsets.add((dy, dx))
    assert len(offsets) > 10 and max(max(abs(a), abs(b)) for a, b in offsets) == 2


def test_augmented_episodes_are_the_same_at_any_thread_count():
    family = mf.tasks.Omniglot(subset="small1", ways=5, shots=1, query=3, rotations=4, shift=2)
    one = family.sample(16, seed=9, iteration=4, num_threads=1)
    two = family.sample(16, seed=9, iteration=4, num_threads=2)
    for name in ("x_support", "y_support", "x_query", "y_query"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    assert not np.array_equal(one.x_support, family.sample(16, seed=9, iteration=5).x_support)


def test_episodes_within_an_alphabet(both):
    family = mf.tasks.Omniglot(HELD_OUT, subset="small2", ways=20, shots=1, query=1, within_alphabet=True)
    data = mf.datasets.load_omniglot("small2")
    flat = data.images.reshape(len(data.images), -1)
    alphabets_seen = set()
    for x in family.sample(12, seed=2).x_support:
        rows = [int(np.flatnonzero((flat == image).all(axis=1))[0]) for image in x]
        alphabets = {data.alphabets[r] for r in rows}
        assert len(alphabets) == 1 and len({data.labels[r] for r in rows}) == 20
        alphabets_seen |= alphabets
    assert alphabets_seen == {"Japanese_(katakana)", "Sanskrit"}  # Tagalog has 17 characters: never 20-way


def test_within_groups_with_rotations_count_turns():
    images, labels = asymmetric_images(classes=6)
    within = np.where(labels < 3, "first", "second")
    family = mf.tasks.Classification(images, labels, ways=12, shots=1, query=1, rotations=4, within=within)
    x = family.sample(3, seed=0).x_support
    for task in x:
        rows = {source_of(image, images)[0][0] for image in task.reshape(-1, 1, 9, 9)}
        assert len({within[r] for r in rows}) == 1


@pytest.mark.parametrize("arguments, match", [
    (dict(ways=7), "ways = 7 classes, but only 6 are chosen"),
    (dict(ways=25, rotations=4), r"24 with their rotations"),
    (dict(shots=3, query=2), "shots \\+ query = 5"),
    (dict(rotations=5), "rotations must be at most 4"),
    (dict(rotations=0), "rotations must be"),
    (dict(shift=-1), "shift must be"),
    (dict(shift=9), "shift must be below"),
    (dict(ways=4, within=np.repeat([0, 1], 12)), "largest group has 3"),
    (dict(within=np.arange(24) % 2), "within must give every row of a class the same group"),
    (dict(within=np.zeros(5)), r"within must have shape \(24,\)"),
    (dict(within=np.zeros(24)), "within must hold integer ids or names"),
])
def test_refusals_name_the_argument(arguments, match):
    images, labels = asymmetric_images()
    with pytest.raises((ValueError, TypeError), match=match):
        mf.tasks.Classification(images, labels, **{"ways": 3, "shots": 1, "query": 1, **arguments})


def test_rotations_need_square_images():
    with pytest.raises(ValueError, match="square images"):
        mf.tasks.Classification(np.zeros((8, 5)), np.arange(8) % 2, ways=2, query=1, rotations=4)
    with pytest.raises(ValueError, match="square images"):
        mf.tasks.Classification(np.zeros((8, 1, 3, 4)), np.arange(8) % 2, ways=2, query=1, shift=1)


def test_omniglot_family_refusals():
    with pytest.raises(ValueError, match="Klingon"):
        mf.tasks.Omniglot(["Klingon"])
    with pytest.raises(ValueError, match="ways = 20 classes of one group"):
        mf.tasks.Omniglot("Tagalog", subset="small2", ways=20, within_alphabet=True)
    with pytest.raises(ValueError, match="shots \\+ query = 21"):
        mf.tasks.Omniglot(ways=5, shots=1, query=20)


def test_omniglot_family_saves_without_data_and_pickles(tmp_path):
    family = mf.tasks.Omniglot(subset="small1", ways=5, shots=1, query=2, rotations=4, shift=1)
    assert mf.tasks.family_from_config(json.loads(json.dumps(family._config()))) == family
    assert pickle.loads(pickle.dumps(family)) == family
    learner = mf.MAML(mf.ConvNet((1, 28, 28), channels=(4, 4), outputs=5), loss="softmax_ce", inner_lr=0.4, seed=0,
                      num_threads=1)
    learner.fit(family, iterations=2, meta_batch=2, progress=False)
    path = tmp_path / "m.mfz"
    learner.save(path)
    assert path.stat().st_size < 100_000
    loaded = mf.load(path)
    assert loaded.tasks == family
    learner.fit(family, iterations=2, meta_batch=2, progress=False)
    loaded.fit(loaded.tasks, iterations=2, meta_batch=2, progress=False)
    assert np.array_equal(loaded.theta, learner.theta)


# --- learning on held-out alphabets -----------------------------------------------------


def pixel_nearest_neighbour(batch):
    correct = []
    for xs, ys, xq, yq in zip(batch.x_support, batch.y_support, batch.x_query, batch.y_query):
        distances = ((xq[:, None, :] - xs[None, :, :]) ** 2).sum(-1)
        correct.append(np.mean(ys[distances.argmin(1)] == yq))
    return float(np.mean(correct))


def test_meta_learning_beats_pixel_nearest_neighbour_on_held_out_alphabets():
    train = mf.tasks.Omniglot(subset="small1", ways=5, shots=1, query=3, rotations=4)
    test = mf.tasks.Omniglot(HELD_OUT, subset="small2", ways=5, shots=1, query=5)
    episodes = test.sample(400, seed=123)
    net = mf.ConvNet((1, 28, 28), channels=(16, 16, 16, 16), outputs=5)
    maml = mf.MAML(net, loss="softmax_ce", inner_lr=0.4, inner_steps=1, seed=0, num_threads=2)
    maml.fit(train, iterations=1000, meta_batch=8, progress=False)  # about 4 s on 2 cores
    report = maml.evaluate(episodes, steps=(1,))
    accuracy, baseline = report.accuracy[0], pixel_nearest_neighbour(episodes)
    # 400 episodes of 25 queries: the accuracies' standard errors are about 0.01; the margin of
    # 0.15 is many of them (measured: 0.677 against 0.387).
    assert accuracy > baseline + 0.15, (accuracy, baseline)
