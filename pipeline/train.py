"""DVC stage: `python pipeline/train.py <experiment>` (see vae_tf.stages.train)."""

from vae_tf import cli

if __name__ == "__main__":
    cli.run_experiment_stage("train")
