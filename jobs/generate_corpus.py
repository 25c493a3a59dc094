"""Write a synthetic labelled corpus (PASCAL VOC layout) to a local folder.

    python jobs/generate_corpus.py --output data/synthetic
    python jobs/generate_corpus.py --output data/synthetic --num-train 1000 --num-val 200 --seed 7

Five object classes (disc, square, triangle, ring, bar) on cluttered backgrounds; see
`fcn_core.synthetic`. The same flags always give the same bytes. The folder can be used as it is,
or copied to object storage and read like any VOC corpus.
"""
import argparse
import sys

from fcn_core.synthetic import generate_corpus


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", required=True, help="folder to write into (created if missing; files of the same name are replaced)"
    )
    parser.add_argument("--num-train", type=int, default=200, help="training images, at least 1 (default: 200)")
    parser.add_argument("--num-val", type=int, default=50, help="validation images (default: 50)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed; a seed always gives the same bytes (default: 0)")
    parser.add_argument("--min-size", type=int, default=64,
                        help="smallest image height/width in px, >= 16 (default: 64)")
    parser.add_argument("--max-size", type=int, default=160, help="largest image height/width in px (default: 160)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        corpus = generate_corpus(
            args.output,
            num_train=args.num_train,
            num_val=args.num_val,
            min_size=args.min_size,
            max_size=args.max_size,
            seed=args.seed,
        )
    except ValueError as error:  # out-of-range sizes or counts: report them as flag errors
        parser.error(str(error))
    print(
        f"wrote {len(corpus.train_ids)} training and {len(corpus.val_ids)} validation images "
        f"({len(corpus.class_names)} classes) to {corpus.root.resolve()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
