"""`python -m dodas_tasks.cli`: the same as the `dodas` command."""

from dodas_tasks.cli import main

main()
