"""What the tests share, by job: the project and its commands (project), tiny IMDB archives (archives), tiny
training runs and their store (training), stopping runs (interrupts), ports and an MLflow server (servers), a local
SLURM cluster (slurm), the notebook (notebook). Fixtures built on them live in tests/conftest.py."""
