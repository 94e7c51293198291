"""DVC stage `prepare`: its paths from dvc.yaml's cmd (see vae_tf.stages.prepare)."""

from vae_tf import cli

if __name__ == "__main__":
    cli.run_stage("prepare")
