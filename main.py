"""``python main.py ...``: the same CLI as the installed ``kubernetes-ec2-autoscaler`` command,
run from a checkout (see README.md). The CLI lives in ``autoscaler/run/cli.py``."""
import sys

from autoscaler.run.cli import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    sys.exit(main())
