"""The ``imos`` command line."""

from __future__ import annotations

import argparse
import sys

from service.cli import cvat, evaluate, manage, roles, segment, training
from service.errors import ImosError, NotFound


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imos", description="iMOS Serve: one mask in, a whole sequence out")
    sub = parser.add_subparsers(dest="command", required=True)
    segment.register(sub)
    manage.register(sub)
    roles.register(sub)
    evaluate.register(sub)
    training.register(sub)
    cvat.register(sub)
    from service.cli import bench

    bench.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    except ImosError as exc:
        print(f"imos: {'not found' if isinstance(exc, NotFound) else 'error'}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
