"""DVC stage `report`: its paths from dvc.yaml's cmd (see vae_tf.stages.report)."""

from vae_tf import cli

if __name__ == "__main__":
    cli.run_stage("report")
