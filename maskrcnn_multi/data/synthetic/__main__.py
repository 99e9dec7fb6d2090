"""CLI: ``python -m maskrcnn_multi.data.synthetic --output DIR --num-train N --num-val M --seed S``."""
import argparse
import logging
from typing import Optional, Sequence

from .register import default_root
from .shapes import generate_shapes_dataset


def main(argv: Optional[Sequence[str]] = None) -> None:
    """CLI entry point: generate the set into --output."""
    parser = argparse.ArgumentParser(description="Generate the synthetic shapes COCO dataset.")
    parser.add_argument("--output", default=default_root(), help="destination folder (default: %(default)s)")
    parser.add_argument("--num-train", type=int, default=400)
    parser.add_argument("--num-val", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 320), metavar=("MIN", "MAX"),
                        help="each image side is drawn in [MIN, MAX]")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_shapes_dataset(args.output, num_train=args.num_train, num_val=args.num_val, seed=args.seed,
                            image_size=tuple(args.image_size))


if __name__ == "__main__":
    main()
