"""DVC stage: params.yaml (data, seed) -> data/prepared/."""

from vae_tf import cli, stages

if __name__ == "__main__":
    cli.run(stages.prepare)
