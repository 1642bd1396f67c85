"""The ``annot`` command: the app with every command module registered on it."""

from annot.cli import build, inspect, library, server, use  # noqa: F401  (each registers its commands on the app)
from annot.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
