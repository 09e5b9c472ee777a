"""Canonical signed digits: one definition (flow.csd) that every user imports."""

import numpy as np

from flow.csd import csd_digit_planes, csd_digits, csd_nonzero_digits


def test_csd_is_defined_once():
    """The quantizer, the op counter/estimator and the HLS schedule (whose tables the shift-add pass
    writes) use flow.csd, not copies."""
    import flow.csd
    from flow.hls import schedule
    from flow.hls.passes import shift_add
    from flow.quant import apot
    from flow.report import estimate, opcount

    assert schedule.csd_digits is flow.csd.csd_digits
    assert shift_add.csd_tables is schedule.csd_tables
    assert opcount.csd_nonzero_digits is flow.csd.csd_nonzero_digits
    assert estimate.csd_nonzero_digits is flow.csd.csd_nonzero_digits
    assert apot.csd_nonzero_digits is flow.csd.csd_nonzero_digits


def test_csd_digits_sum_to_value_and_are_non_adjacent():
    for v in list(range(-600, 601)) + [2**20 + 7, -(2**31) + 5, 2**40 - 1]:
        d = csd_digits(v)
        assert sum(s * (1 << e) for e, s in d) == v
        exps = [e for e, _ in d]
        assert all(b - a >= 2 for a, b in zip(exps, exps[1:])), (v, d)   # the canonical (NAF) property
        assert all(s in (1, -1) for _, s in d)


def test_csd_known_values():
    assert csd_digits(0) == []
    assert csd_digits(7) == [(0, -1), (3, 1)]            # 8 - 1
    assert csd_digits(-5) == [(0, -1), (2, -1)]
    assert csd_digits(3) == [(0, -1), (2, 1)]            # 4 - 1
    assert csd_nonzero_digits(np.array([0, 1, 3, 7, 11, 0b1010101, -255])).tolist() == [0, 1, 2, 2, 3, 4, 2]


def test_csd_counts_match_digit_lists_and_keep_shape():
    vals = np.arange(-300, 288).reshape(3, 7, 28)
    counts = csd_nonzero_digits(vals)
    assert counts.shape == vals.shape
    assert counts.ravel().tolist() == [len(csd_digits(int(v))) for v in vals.ravel()]
    planes = csd_digit_planes(vals)
    assert (np.sum(planes.astype(np.int64) * (1 << np.arange(planes.shape[-1])), axis=-1) == vals).all()


def test_csd_is_minimal_against_brute_force():
    """No signed-binary form of a small integer has fewer non-zero digits than its CSD form."""
    best = {0: 0}
    frontier = {0}
    for k in range(1, 6):   # all sums of k signed powers of two up to 2^9 (|v| <= 200 needs <= 5)
        frontier = {x + s * (1 << e) for x in frontier for e in range(10) for s in (1, -1)}
        for x in frontier:
            best.setdefault(x, k)
    for v in range(-200, 201):
        assert csd_nonzero_digits(v) == best[v], v
