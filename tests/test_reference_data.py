"""The reference-data rule: skip when absent, fail when GREENROOM_REFERENCE_DATA points nowhere."""

import pytest

from tests.conftest import reference_data


def test_a_configured_but_missing_folder_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("GREENROOM_REFERENCE_DATA", str(tmp_path / "missing"))
    with pytest.raises(pytest.fail.Exception, match="is set but is not a folder"):
        reference_data("chatharuhi/haruhi")


def test_a_missing_dataset_inside_a_configured_folder_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("GREENROOM_REFERENCE_DATA", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="is missing"):
        reference_data("chatharuhi/haruhi")
