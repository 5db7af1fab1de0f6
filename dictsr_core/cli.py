"""`dictsr ...` / `python -m dictsr_core ...`: thin argument parsing over the package's functions."""

from __future__ import annotations

import argparse
import sys


def _cmd_prepare(args) -> int:
    from dictsr_core.data.prepare import prepare_from_args

    return prepare_from_args(args)


def _cmd_weights(args) -> int:
    from dictsr_core.weights import fetch_weights

    fetch_weights(cache_dir=args.cache_dir, force=args.force)
    return 0



def _add_prepare(sub):
    from dictsr_core.data.prepare import add_prepare_arguments

    parser = sub.add_parser("prepare", help="build an unpaired training set and a paired validation set")
    add_prepare_arguments(parser)
    parser.set_defaults(func=_cmd_prepare)


def _add_weights(sub):
    parser = sub.add_parser("weights", help="fetch and convert the offline VGG16/AlexNet backbones for LPIPS")
    parser.add_argument("--cache-dir", default=None, help="default: $DICTSR_CACHE or ~/.cache/dictsr")
    parser.add_argument("--force", action="store_true", help="fetch and convert again")
    parser.set_defaults(func=_cmd_weights)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dictsr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_weights(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
