"""`lipsync-train`: the command group of the self-supervised training pipeline."""

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lipsync-train")
def main():
    """Train SyncNet-family models on your own synced footage (self-supervised).

    The pipeline (prepare shards -> fit -> eval -> export) is being built; this
    release ships the command group only, so `lipsync-train --help` lists what exists.
    """
