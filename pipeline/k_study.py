"""DVC stage `k_study`: its paths from dvc.yaml's cmd (see vae_tf.stages.k_study)."""

from vae_tf import cli

if __name__ == "__main__":
    cli.run_stage("k_study")
