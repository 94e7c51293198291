"""DVC's plot pages without network: an HTML template for `dvc plots show` / `dvc plots diff`
(DVC's `plots.html_template`) that carries, inline, the Vega, Vega-Lite and vega-embed builds
DVC's pages otherwise load from a CDN (and stay blank offline).

    vae-tf offline-plots            # once per clone, where the npm registry is reachable

The builds are those dvc-render names (`VegaRenderer.SCRIPTS`), fetched with `npm pack` (or read
from a folder of those tarballs, `--from`); the page goes to .dvc/plots/offline.html (ignored by
git) and is set as plots.html_template in .dvc/config.local.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from vae_tf.errors import UserError
from vae_tf.files import atomic_write

TEMPLATE = "plots/offline.html"  # relative to .dvc/, as DVC reads plots.html_template

PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def cdn_packages() -> list[tuple[str, str]]:
    """(npm package, version) of every script DVC's pages load from the CDN."""
    from dvc_render.vega import VegaRenderer

    return re.findall(r"cdn\.jsdelivr\.net/npm/([\w-]+)@([\w.-]+)", VegaRenderer.SCRIPTS)


def page(scripts: list[str]) -> str:
    """The HTML template: `scripts` inline in the head (a '</script' inside one escaped, so that
    it cannot end its element), DVC's `{plot_divs}` and `{refresh_tag}` placeholders."""
    escaped = (code.replace("</script", "<\\/script") for code in scripts)
    inline = "\n".join(f"    <script>\n{code}\n    </script>" for code in escaped)
    return PAGE.format(scripts=inline)


def build(repo: Path = Path("."), tarballs: Optional[Path] = None) -> Path:
    """Write the template into `repo`'s .dvc/ and set it as the repository's (local) template."""
    packages = cdn_packages()
    with tempfile.TemporaryDirectory() as tmp:
        folder = tarballs or Path(tmp)
        if tarballs is None:
            _npm_pack([f"{name}@{version}" for name, version in packages], folder)
        scripts = [_build_of(folder / f"{name}-{version}.tgz", name) for name, version in packages]
    path = repo / ".dvc" / TEMPLATE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = page(scripts)
    atomic_write(path, lambda tmp: tmp.write_text(text))
    subprocess.run(["dvc", "config", "--local", "plots.html_template", TEMPLATE], cwd=repo, check=True,
                   capture_output=True)
    return path


def _npm_pack(specs: list[str], folder: Path) -> None:
    try:
        result = subprocess.run(["npm", "pack", *specs, "--pack-destination", str(folder)], capture_output=True,
                                text=True, timeout=600)
    except FileNotFoundError:
        raise UserError("npm not found: install Node.js, or give a folder of the tarballs "
                        f"({', '.join(specs)}) with --from") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"npm pack {' '.join(specs)} failed ({last}); give a folder of those tarballs with --from")


def _build_of(tarball: Path, name: str) -> str:
    """The minified browser build of npm package `name` in its tarball."""
    member = f"package/build/{name}.min.js"
    try:
        with tarfile.open(tarball) as archive:
            return archive.extractfile(member).read().decode()
    except (OSError, KeyError, AttributeError, tarfile.TarError) as err:
        raise UserError(f"{tarball}: no readable {member} ({err})") from None
