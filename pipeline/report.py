"""DVC stage: `python pipeline/report.py` (see vae_tf.stages.report)."""

from vae_tf import cli, stages

if __name__ == "__main__":
    cli.run(stages.report)
