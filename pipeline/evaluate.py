"""DVC stage: `python pipeline/evaluate.py <experiment>` (see vae_tf.stages.evaluate)."""

from vae_tf import cli

if __name__ == "__main__":
    cli.run_experiment_stage("evaluate")
