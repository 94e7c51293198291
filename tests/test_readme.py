"""The README is a front door that stays true: its parts table and layout are what the code
registers and holds (`vae_tf.readme`), it stays short, and every page it links to exists."""

import re
from pathlib import Path

from vae_tf.readme import BLOCK, layout, parts_table, regenerate

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_generated_blocks_are_what_the_registries_and_the_package_hold():
    """Fails after a new kind, field, default or module until `python -m vae_tf.readme` is run."""
    assert {match.group(2) for match in BLOCK.finditer(README)} == {"parts", "layout"}
    assert regenerate(README) == README
    assert "| model.posterior | iaf | num_steps: 2, context_dim: 16, made_units: [64, 64] |" in parts_table()
    assert "  posteriors/iaf.py" in layout() and "  readme.py" in layout()


def test_the_readme_is_a_front_door_and_its_links_lead_somewhere():
    assert len(README.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+)\)", README) + re.findall(r"`((?:docs|data|studies)/[\w/.-]+\.md)`", README)
    assert "docs/pipeline.md" in links
    for link in links:
        assert (ROOT / link).is_file(), link
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name in README, f"docs/{page.name} is linked from nowhere"
