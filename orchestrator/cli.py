"""The ``orchestrate`` command line: a thin shell over the Python API.

Each command lives in ``orchestrator/commands/<name>.py``; this module only assembles the group.
"""

from __future__ import annotations

import click

from orchestrator.commands.embed import embed
from orchestrator.commands.launch import launch
from orchestrator.commands.library import library
from orchestrator.commands.mini_data import mini_data
from orchestrator.commands.pretrain import pretrain
from orchestrator.commands.recommend import recommend
from orchestrator.commands.report import report


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="task-sweep")
def main() -> None:
    """task-sweep: build the Task2Vec task library, train experts and heads, embed tasks, measure distances."""


main.add_command(launch)
main.add_command(library)
main.add_command(mini_data)
main.add_command(embed)
main.add_command(report)
main.add_command(recommend)
main.add_command(pretrain)

if __name__ == "__main__":
    main()
