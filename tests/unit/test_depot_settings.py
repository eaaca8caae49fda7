"""The depot's settings: defaults, and the values refused at start."""
from __future__ import annotations

import pytest

from services.depot.settings import DepotSettings


def test_the_foreign_denials_bound_defaults_to_20_and_must_be_at_least_one(tmp_path):
    assert DepotSettings(master_key_file=tmp_path / "k").foreign_denials_per_hour == 20
    with pytest.raises(SystemExit, match="RS_DEPOT_FOREIGN_DENIALS_PER_HOUR must be at least 1"):
        DepotSettings(master_key_file=tmp_path / "k", foreign_denials_per_hour=0).check()
