"""J and F (DAVIS definitions) against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from service.evaluation.metrics import bound_radius, boundary_f, boundary_map, disk, jaccard, score
from service.evaluation.protocol import Protocol
from service.evaluation.scoring import score_sequence, summarise


def band(rows: range, size: int = 40) -> np.ndarray:
    """A full-width horizontal band [size, size] covering ``rows``."""
    m = np.zeros((size, size), bool)
    m[rows.start:rows.stop] = True
    return m


def pixel(r: int, c: int, size: int = 40) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[r, c] = True
    return m


def test_bound_radius_matches_the_readme() -> None:
    assert bound_radius((52, 34)) == 1  # hippocampus
    assert bound_radius((112, 112)) == 2  # echonet
    assert bound_radius((512, 512)) == 6
    assert bound_radius((40, 40)) == 1
    assert bound_radius((40, 40), bound_th=3) == 3  # th >= 1 is absolute pixels


def test_disk_is_euclidean() -> None:
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    d2 = disk(2)
    assert d2.sum() == 13 and d2[0, 0] == 0 and d2[1, 1] == 1 and d2[0, 1] == 0


def test_seg2bmap_of_a_square() -> None:
    seg = np.zeros((5, 5), bool)
    seg[1:3, 1:3] = True
    expected = np.zeros((5, 5), bool)
    for r, c in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]:
        expected[r, c] = True
    assert (boundary_map(seg) == expected).all()


def test_seg2bmap_last_row_and_column() -> None:
    # The last column compares only south, the last row only east, the corner is never set:
    # an object touching the right edge has no boundary drawn along that edge.
    seg = np.zeros((4, 4), bool)
    seg[1:3, 2:] = True
    expected = np.array([[0, 1, 1, 1],
                         [0, 1, 0, 0],
                         [0, 1, 1, 1],
                         [0, 0, 0, 0]], bool)
    assert (boundary_map(seg) == expected).all()


def test_identical_masks() -> None:
    m = band(range(10, 20))
    assert score(m, m).j == 1.0 and score(m, m).f == 1.0


def test_both_empty_is_perfect() -> None:
    z = np.zeros((40, 40), bool)
    s = score(z, z)
    assert (s.j, s.f, s.jf) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("pred_empty", [True, False])
def test_one_side_empty_scores_zero(pred_empty: bool) -> None:
    m, z = band(range(10, 20)), np.zeros((40, 40), bool)
    s = score(z, m) if pred_empty else score(m, z)
    assert (s.j, s.f) == (0.0, 0.0)


def test_band_shifted_within_1px_tolerance() -> None:
    # 40x40: radius 1. GT boundary rows 9 and 19; prediction's rows 10 and 20.
    gt, pred = band(range(10, 20)), band(range(11, 21))
    assert jaccard(pred, gt) == pytest.approx(9 / 11)
    assert boundary_f(pred, gt) == 1.0


def test_band_shifted_beyond_1px_tolerance() -> None:
    gt, pred = band(range(10, 20)), band(range(12, 22))
    assert jaccard(pred, gt) == pytest.approx(8 / 12)
    assert boundary_f(pred, gt) == 0.0


def test_half_the_boundary_matches() -> None:
    # Top edge 2 px off (unmatched at radius 1), bottom edge exact: P = R = 1/2.
    gt, pred = band(range(10, 20)), band(range(12, 20))
    assert jaccard(pred, gt) == pytest.approx(0.8)
    assert boundary_f(pred, gt) == pytest.approx(0.5)


def test_2px_tolerance_on_112px_frames() -> None:
    # 112x112 (echonet): radius 2, so a 2 px shift still matches and a 3 px shift does not.
    gt = band(range(40, 60), 112)
    assert boundary_f(band(range(42, 62), 112), gt) == 1.0
    assert boundary_f(band(range(43, 63), 112), gt) == 0.0
    assert jaccard(band(range(42, 62), 112), gt) == pytest.approx(18 / 22)


def test_one_pixel_object() -> None:
    gt = pixel(10, 10)
    assert score(gt, gt).j == 1.0 and score(gt, gt).f == 1.0
    # Diagonal neighbour: no overlap; boundaries {(9,9),(9,10),(10,9),(10,10)} and the same + (1,1):
    # within the radius-1 cross, 3 of 4 pixels match on each side.
    s = score(pixel(11, 11), gt)
    assert s.j == 0.0
    assert s.f == pytest.approx(0.75)


def test_multiple_objects_are_scored_separately() -> None:
    gt = np.zeros((40, 40), np.int64)
    gt[5:15, 5:15] = 1
    gt[20:30, 20:30] = 2
    pred = np.where(gt == 1, 1, 0)  # object 2 missing
    pred[20:30, 5:15] = 2  # ... and drawn elsewhere
    protocol = Protocol("best", "both", (), {1: ("00001",), 2: ("00001",)})
    seq = score_sequence("ds__a", "ds", protocol, {"00001": gt}, {"00001": pred})
    (o1, o2) = seq.objects
    assert (o1.mean.j, o1.mean.f) == (1.0, 1.0)
    assert (o2.mean.j, o2.mean.f) == (0.0, 0.0)
    assert seq.mean.jf == 0.5


def test_missing_prediction_is_empty_and_absent_objects_count() -> None:
    gt_present = np.zeros((40, 40), np.int64)
    gt_present[5:15, 5:15] = 1
    gt_absent = np.zeros((40, 40), np.int64)
    protocol = Protocol("first", "forward", (), {1: ("00001", "00002")})
    seq = score_sequence("ds__a", "ds", protocol, {"00001": gt_present, "00002": gt_absent}, {})
    assert seq.objects[0].j == (0.0, 1.0)  # missing prediction = empty; empty vs absent = 1
    assert seq.mean.jf == 0.5


def test_aggregation_is_object_then_sequence_then_dataset() -> None:
    gt = np.zeros((40, 40), np.int64)
    gt[5:15, 5:15] = 1
    protocol = Protocol("first", "forward", (), {1: ("00001",)})
    perfect = score_sequence("a__1", "a", protocol, {"00001": gt}, {"00001": gt})
    wrong = score_sequence("a__2", "a", protocol, {"00001": gt}, {})
    other = score_sequence("b__1", "b", protocol, {"00001": gt}, {"00001": gt})
    s = summarise("first", [perfect, wrong, other])
    assert s.datasets["a"].jf == 0.5 and s.datasets["b"].jf == 1.0
    assert s.overall.jf == 0.75  # mean over datasets, not over the three sequences


def _brute_force_f(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """F from the definition: a boundary pixel matches if the other boundary has a pixel within
    Euclidean distance ``radius``."""
    pb, gb = np.argwhere(boundary_map(pred)), np.argwhere(boundary_map(gt))
    if len(pb) == 0 or len(gb) == 0:
        return float(len(pb) == len(gb))
    d = np.sqrt(((pb[:, None, :] - gb[None, :, :]) ** 2).sum(-1))
    precision, recall = (d.min(1) <= radius).mean(), (d.min(0) <= radius).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("size", [40, 112, 160])
def test_f_equals_the_definition_on_random_blobs(size: int) -> None:
    rng = np.random.default_rng(size)
    for _ in range(3):
        noise = rng.random((size // 8, size // 8)) > 0.6
        gt = np.kron(noise, np.ones((8, 8), bool))
        pred = np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), (0, 1))
        pred[rng.random(pred.shape) > 0.97] ^= True
        radius = bound_radius(gt.shape)
        assert boundary_f(pred, gt) == pytest.approx(_brute_force_f(pred, gt, radius), abs=1e-12)
