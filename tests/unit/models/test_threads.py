"""Thread caps a server applies: BLAS pools (TRIAGE_BLAS_THREADS)."""

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from ticket_triage.models.base import limit_blas_threads


def _blas_threads() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


@pytest.fixture
def restore_blas():
    before = threadpool_info()
    yield
    for p in before:
        if p["user_api"] == "blas":
            threadpool_limits(limits=p["num_threads"], user_api="blas")


def test_default_caps_blas_at_one_thread(restore_blas):
    import numpy  # noqa: F401  (loads OpenBLAS)

    if not _blas_threads():
        pytest.skip("no BLAS library visible to threadpoolctl")
    threadpool_limits(limits=2, user_api="blas")
    assert limit_blas_threads({}) == 1
    assert _blas_threads() == {1}
    assert limit_blas_threads({"TRIAGE_BLAS_THREADS": "2"}) == 2


def test_zero_leaves_blas_alone(restore_blas):
    threadpool_limits(limits=2, user_api="blas")
    before = _blas_threads()
    assert limit_blas_threads({"TRIAGE_BLAS_THREADS": "0"}) == 0
    assert _blas_threads() == before


@pytest.mark.parametrize("bad", ["two", "-1", "1.5"])
def test_a_bad_value_says_what_to_give(bad):
    with pytest.raises(ValueError, match="TRIAGE_BLAS_THREADS"):
        limit_blas_threads({"TRIAGE_BLAS_THREADS": bad})
