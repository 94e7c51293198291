"""Benchmark: what a user (or an attacker) gets for bad params, data files and server flags.

Each case runs the real command (`pipeline/resolve.py` for params, `pipeline/prepare.py` for data,
`vae-tf serve` for flags) in a scratch copy of the project, and is counted by outcome:
- `one line`: exit 2, stderr one `error: ...` line naming the key, file or flag (invalid params:
  a problem per indented line under it; argparse: its usage line before it): what every case
  should get;
- `traceback`: a Python traceback;
- `accepted`: exit 0, for input that should have been refused;
- `other`: anything else (a hang past the timeout, a signal).
The cheap cases are also tests (tests/test_config.py, tests/test_data.py, tests/test_serving.py).
Prints each case and the counts, and writes them to docs/results/bad_input.md.

    python benchmarks/bad_input.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from vae_tf.provenance import write_result

ROOT = Path(__file__).resolve().parents[1]
VAE_TF = str(Path(sys.executable).parent / "vae-tf")

PARAMS = {  # params.yaml text -> refused by resolve
    "unknown key": "trainig: {epochs: 3}",
    "text for a number": "training: {epochs: many}",
    "number in quotes": "training: {learning_rate: '1e-3'}",
    "K of 2^31 + 10": "evaluation: {num_samples: 2147483658}",
    "infinite AIS step": "evaluation: {ais: {step_size: .inf}}",
    "NaN learning rate": "training: {learning_rate: .nan}",
    "MADE of 10^7 units": "model: {posterior: {kind: iaf, made_units: [10000000]}}",
    "3 x 8192 hidden units": "model: {hidden_units: [8192, 8192, 8192]}",
    "implicit q under elbo": "experiments: {a: {model: {posterior: implicit}}}",
    "refinement of an iaf": "experiments: {a: {model: {posterior: iaf}, evaluation: {refinement: {steps: 3}}}}",
    "dreg with a planar q": "experiments: {a: {model: {posterior: planar}, objective: {kind: iwae}}}",
    "vamp on a hierarchical q": "model: {posterior: hierarchical, prior: vamp}",
    "experiment named k_study": "experiments: {k_study: {}}",
    "device listed twice": "training: {distribute: {devices: [/cpu:0, /cpu:0]}}",
    "batch size 64.5": "training: {batch_size: 64.5}",
    "not a mapping": "- a\n- b",
    "broken YAML": "training: {epochs: [3",
    "duplicate key": "training:\n  epochs: 3\n  epochs: 5",
}

DATA = {  # npz arrays -> refused by prepare
    "images of no pixels": {"train": np.zeros((20, 8, 8, 0)), "test": np.zeros((5, 8, 8, 0))},
    "images of no rows": {"train": np.zeros((20, 0, 8), int), "test": np.zeros((5, 0, 8), int)},
    "splits of two shapes": {"train": np.zeros((20, 2, 2)), "test": np.zeros((5, 3, 3))},
    "intensities above 1": {"train": np.full((20, 2, 2), 2.0), "test": np.zeros((5, 2, 2))},
    "NaN intensities": {"train": np.full((20, 2, 2), np.nan), "test": np.zeros((5, 2, 2))},
    "2^40 grey levels": {"train": np.full((20, 4), 2**40), "test": np.zeros((5, 4), int)},
    "no test array": {"train": np.zeros((20, 2, 2))},
}

FLAGS = {  # vae-tf serve flags -> refused before the model loads
    "port 0": ["--port", "0"],
    "port 99999": ["--port", "99999"],
    "host 0.0.0.0.0": ["--host", "0.0.0.0.0"],
    "max-seconds NaN": ["--max-seconds", "nan"],
    "max-batch-size 0": ["--max-batch-size", "0"],
    "no exported model": [],
}


def outcome(result: subprocess.CompletedProcess) -> str:
    err = result.stderr.strip().splitlines()
    if "Traceback (most recent call last):" in result.stderr:
        return "traceback"
    if result.returncode == 0:
        return "accepted"
    lines = [line for line in err if not line.startswith("usage:") and not line.startswith("  ")]
    return "one line" if result.returncode == 2 and len(lines) == 1 and "error:" in lines[0] else "other"


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, -1, "", "timed out")


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        project = Path(scratch)
        shutil.copy(ROOT / "dvc.yaml", project)
        (project / "data" / "raw").mkdir(parents=True)
        (project / "params.yaml").write_text("seed: 0\n")  # the default data, which resolve checks the params against
        run([sys.executable, str(ROOT / "pipeline" / "prepare.py"), "data/prepared"], project).check_returncode()
        for name, text in PARAMS.items():
            (project / "params.yaml").write_text(text + "\n")
            results[f"params: {name}"] = run([sys.executable, str(ROOT / "pipeline" / "resolve.py"), "data/prepared",
                                              "resolved"], project)
        for name, arrays in DATA.items():
            np.savez(project / "data" / "raw" / "bad.npz", **arrays)
            (project / "params.yaml").write_text("data: {source: npz, path: data/raw/bad.npz, validation_size: 5}\n")
            results[f"data: {name}"] = run([sys.executable, str(ROOT / "pipeline" / "prepare.py"), "data/prepared"], project)
        for name, flags in FLAGS.items():
            results[f"serve: {name}"] = run([VAE_TF, "serve", "--model-name", "m", "--model-base-path",
                                             str(project / "none"), *flags], project)
    counts, rows = Counter(), []
    for case, result in results.items():
        kind = outcome(result)
        counts[kind] += 1
        last = (result.stderr.strip().splitlines() or [""])[-1].replace("|", "\\|")
        print(f"{kind:<10} {case:<40} {last[:110]}")
        rows.append(f"| {case} | {kind} | {last} |")
    total = ", ".join(f"{kind}: {counts[kind]}" for kind in ("one line", "traceback", "accepted", "other"))
    print("\n" + total)
    write_result("bad_input", "python benchmarks/bad_input.py", f"{total}\n\n| case | outcome | last line of stderr |\n"
                 "| --- | --- | --- |\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
