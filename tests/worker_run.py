"""One process of the multi-worker test (tests/test_distributed.py): the training stage's short run
(`tests.mirrored_update.stage_run`) in `folder`, as worker `index` of a cluster of workers on
127.0.0.1 at `ports` (`training.distribute: {strategy: multi_worker}`, the cluster from
TF_CONFIG), or with `single` on one device. Writes its final weights and history to
`<folder>.npz` / `<folder>.json`, beside the folder, so that the folder holds only what training wrote.

    python -m tests.worker_run single FOLDER
    python -m tests.worker_run worker INDEX PORT,PORT,... FOLDER
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    role, *rest = sys.argv[1:]
    distribute = None
    if role == "worker":
        index, ports, folder = rest
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports.split(",")]}
        os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": int(index)}})
        distribute = {"strategy": "multi_worker"}
    else:
        (folder,) = rest

    import numpy as np

    from tests.mirrored_update import stage_run
    from vae_tf.data import DataParams, prepare

    folder = Path(folder)
    weights, history = stage_run(prepare(DataParams(), seed=0), distribute, folder)
    np.savez(folder.with_suffix(".npz"), *weights)
    folder.with_suffix(".json").write_text(json.dumps(history))


if __name__ == "__main__":
    main()
