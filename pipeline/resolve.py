"""DVC stage: `python pipeline/resolve.py` (see vae_tf.stages.resolve)."""

from vae_tf import cli, stages

if __name__ == "__main__":
    cli.run(stages.resolve)
