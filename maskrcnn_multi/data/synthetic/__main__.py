"""CLI: ``python -m maskrcnn_multi.data.synthetic --output DIR --num-train N --num-val M --seed S
[--layout shapes|coco2017]``."""
import argparse
import logging
from typing import Optional, Sequence

from .coco2017 import generate_coco2017_layout
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
    parser.add_argument("--layout", choices=("shapes", "coco2017"), default="shapes",
                        help="shapes: annotations/instances_{train,val}.json, train/, val/; coco2017: "
                             "annotations/instances_{train,val}2017.json, train2017/, val2017/ (for --data_path)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate = generate_coco2017_layout if args.layout == "coco2017" else generate_shapes_dataset
    generate(args.output, num_train=args.num_train, num_val=args.num_val, seed=args.seed,
             image_size=tuple(args.image_size))


if __name__ == "__main__":
    main()
