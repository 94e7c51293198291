"""DVC stage of a study (studies/<name>/dvc.yaml): metrics, dvclive, published.yaml -> results.md, reports/."""

from vae_tf import cli, stages

if __name__ == "__main__":
    cli.run(stages.study)
