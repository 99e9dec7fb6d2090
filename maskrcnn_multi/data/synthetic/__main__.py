"""CLI: ``python -m maskrcnn_multi.data.synthetic --output DIR [--num-train N --num-val M --seed S]
[--image-size MIN MAX] [--layout shapes|coco2017] [--overwrite]``.

A non-empty ``--output`` is refused unless ``--overwrite``, which replaces the synthetic set there (and
refuses a folder holding anything else; see ``writer.py``). A user error (bad argument, non-empty or
unwritable folder, full disk) is one line on stderr and exit code 2, with nothing touched;
MASKRCNN_DEBUG=1 shows the traceback.
"""
import argparse
import logging
import os
import sys
from typing import Optional, Sequence

from .register import default_root
from .shapes import check_generation_arguments
from .writer import LAYOUTS, OutputFolderError, write_synthetic_set

PROG = "maskrcnn_multi.data.synthetic"


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (`prog: error: ...`) and exit code 2, not the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help shows the usage)\n")


def argument_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog=PROG, description="Generate the synthetic shapes COCO dataset.")
    parser.add_argument("--output", default=default_root(), help="destination folder (default: %(default)s)")
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-val", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 320), metavar=("MIN", "MAX"),
                        help="each image side is drawn in [MIN, MAX]")
    parser.add_argument("--layout", choices=LAYOUTS, default="shapes",
                        help="shapes: annotations/instances_{train,val}.json, train/, val/; coco2017: "
                             "annotations/instances_{train,val}2017.json, train2017/, val2017/ (for --data_path)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the synthetic set in a non-empty --output (refused if it holds anything else)")
    return parser


def _user_error(message: str) -> int:
    sys.stderr.write(f"{PROG}: error: {' '.join(message.split())}\n")
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point: generate the set into --output; 0, or 2 after one line naming the culprit."""
    args = argument_parser().parse_args(argv)
    try:
        check_generation_arguments(args.num_train, args.num_val, args.seed, args.image_size)
    except ValueError as error:
        if os.environ.get("MASKRCNN_DEBUG"):
            raise
        return _user_error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        write_synthetic_set(args.output, layout=args.layout, overwrite=args.overwrite, num_train=args.num_train,
                            num_val=args.num_val, seed=args.seed, image_size=tuple(args.image_size))
    except OSError as error:  # a non-empty or unusable --output, a full disk, a permission
        if os.environ.get("MASKRCNN_DEBUG"):
            raise
        if isinstance(error, OutputFolderError):
            return _user_error(str(error))
        return _user_error(f"cannot write the set into {os.path.abspath(args.output)}: {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
