"""Tests that read ../shared/data skip with the reason when it is absent, and fail instead when
IMPACT_REQUIRE_SHARED_DATA=1 (conftest.require_shared_data)."""

import pytest
from conftest import REQUIRE_SHARED_DATA_ENV, SHARED_DATA, require_shared_data


def test_absent_shared_data_skips_saying_why_and_how_to_require_it(monkeypatch):
    monkeypatch.delenv(REQUIRE_SHARED_DATA_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_shared_data(SHARED_DATA / "no-such-dataset" / "file.csv")
    assert "no-such-dataset/file.csv missing" in str(skipped.value)
    assert f"{REQUIRE_SHARED_DATA_ENV}=1" in str(skipped.value)


def test_required_shared_data_that_is_absent_fails(monkeypatch):
    monkeypatch.setenv(REQUIRE_SHARED_DATA_ENV, "1")
    with pytest.raises(pytest.fail.Exception):
        require_shared_data(SHARED_DATA / "no-such-dataset" / "file.csv")
    monkeypatch.setenv(REQUIRE_SHARED_DATA_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        require_shared_data(SHARED_DATA / "no-such-dataset" / "file.csv")


def test_present_paths_pass(tmp_path, monkeypatch):
    monkeypatch.setenv(REQUIRE_SHARED_DATA_ENV, "1")
    require_shared_data(tmp_path)  # exists: nothing happens
