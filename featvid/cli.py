"""featvid command line: one click group, one command per job."""
import click


@click.group()
def main() -> None:
    """featvid: volumetric video on standard video codecs."""


if __name__ == "__main__":
    main()
