"""``python -m rlorinfra``: same as the ``rlorinfra`` console script."""

from rlorinfra.cli.main import main

main()
