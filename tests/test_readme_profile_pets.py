"""The Pet profile's README walk-through, literally, in a fresh clone (a file of its own, so that a second test worker
runs it beside the plain ResNet's)."""
import pytest
from test_readme_profiles import walkthrough


@pytest.mark.slow
def test_readme_pets_walkthrough_runs_literally(tmp_path):
    walkthrough(tmp_path, "ms-resnet50-0.65x-pets", "### ResNet50-0.65x on Oxford-IIIT Pet", "## The Ascend path")
