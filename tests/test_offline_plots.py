"""`vae-tf offline-plots`: DVC's plot pages carry Vega's scripts inline, so that they render
with no network (DVC's own pages load them from a CDN and stay blank offline)."""

import io
import subprocess
import sys
import tarfile
from pathlib import Path

from vae_tf.offline_plots import cdn_packages

VAE_TF = str(Path(sys.executable).parent / "vae-tf")


def fake_tarballs(folder: Path) -> dict[str, str]:
    """npm tarballs of the packages DVC's pages load, each build a line of JavaScript naming its
    package (one with a '</script>' in a string, which must not end the page's element)."""
    codes = {}
    for name, version in cdn_packages():
        code = f'window.loaded = (window.loaded || []).concat(["{name}"]); var tag = "</script>";'
        with tarfile.open(folder / f"{name}-{version}.tgz", "w:gz") as archive:
            data = code.encode()
            member = tarfile.TarInfo(f"package/build/{name}.min.js")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
        codes[name] = code
    return codes


def test_dvc_plots_show_writes_a_page_with_the_scripts_inline_and_no_cdn(tmp_path):
    assert [name for name, _ in cdn_packages()] == ["vega", "vega-lite", "vega-embed"]
    repo, tarballs = tmp_path / "repo", tmp_path / "tarballs"
    repo.mkdir()
    tarballs.mkdir()
    codes = fake_tarballs(tarballs)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    (repo / "bound.csv").write_text("epoch,bound\n1,-95\n2,-93\n")
    result = subprocess.run([VAE_TF, "offline-plots", "--from", str(tarballs)], cwd=repo, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "html_template = plots/offline.html" in (repo / ".dvc" / "config.local").read_text()
    subprocess.run(["dvc", "plots", "show", "bound.csv", "-o", "out"], cwd=repo, check=True, capture_output=True)
    html = (repo / "out" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "vegaEmbed(" in html
    head = html.split("</head>")[0]
    for code in codes.values():
        assert code.replace("</script", "<\\/script") in head  # before the plots' own scripts, escaped


def test_missing_tarballs_are_one_line(tmp_path):
    result = subprocess.run([VAE_TF, "offline-plots", "--from", str(tmp_path)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {tmp_path}/vega-5.20.2.tgz: no readable package/build/vega.min.js")
