"""One process of the multi-worker test (tests/test_distributed.py): the training stage's short run
(`tests.mirrored_update.stage_run`) in `folder`, as worker `index` of a cluster of workers on
127.0.0.1 at `ports` (`training.distribute: {strategy: multi_worker}`, the cluster from
TF_CONFIG), or with `single` on one device. Writes its final weights and history to
`<folder>.npz` / `<folder>.json`, beside the folder, so that the folder holds only what training wrote.
Checkpoints go to `--backup` if given (else `FOLDER/backup`); `--kill-after E` ends the process
(exit code 3, as a kill would) when epoch E's callbacks have run.

    python -m tests.worker_run single FOLDER
    python -m tests.worker_run worker INDEX PORT,PORT,... FOLDER [--backup DIR] [--kill-after E]
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["single", "worker"])
    parser.add_argument("rest", nargs="+")
    parser.add_argument("--backup", type=Path)
    parser.add_argument("--kill-after", type=int)
    args = parser.parse_args()
    role, rest, distribute = args.role, args.rest, None
    if role == "worker":
        index, ports, folder = rest
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports.split(",")]}
        os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": int(index)}})
        distribute = {"strategy": "multi_worker"}
    else:
        (folder,) = rest

    import numpy as np

    from tests.mirrored_update import KillAfter, stage_run
    from vae_tf.data import DataParams, prepare

    folder = Path(folder)
    kill = [KillAfter(args.kill_after)] if args.kill_after else []
    weights, history = stage_run(prepare(DataParams(), seed=0), distribute, folder, args.backup, kill)
    np.savez(folder.with_suffix(".npz"), *weights)
    folder.with_suffix(".json").write_text(json.dumps(history))


if __name__ == "__main__":
    main()
