"""DVC stage: `python pipeline/export.py <experiment>` (see vae_tf.stages.export)."""

from vae_tf import cli

if __name__ == "__main__":
    cli.run_experiment_stage("export")
