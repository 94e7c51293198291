"""DVC stage: `python pipeline/k_study.py` (see vae_tf.stages.k_study)."""

from vae_tf import cli, stages

if __name__ == "__main__":
    cli.run(stages.k_study)
