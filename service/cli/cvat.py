"""`imos cvat propagate`: the backward half (and the forward one) for a CVAT task, through the service."""

from __future__ import annotations

import argparse
import os
from typing import Any

from service.errors import InvalidInput


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cvat", help="work on a CVAT server's tasks (needs cvat-sdk: pip install imos-serve[cvat])")
    verbs = p.add_subparsers(dest="verb", required=True)
    q = verbs.add_parser("propagate", help="propagate the shapes drawn on one frame of a task both ways and "
                                           "upload them to every frame")
    q.add_argument("--server", required=True, help="CVAT's URL, e.g. https://app.cvat.ai")
    q.add_argument("--task", type=int, required=True, help="task id")
    q.add_argument("--frame", type=int, required=True, help="the frame whose masks/polygons/boxes to propagate")
    q.add_argument("--job", type=int, default=None, help="only this job's frames (and its annotations)")
    q.add_argument("--service", default=os.environ.get("IMOS_URL", "http://127.0.0.1:8000"),
                   help="iMOS Serve's REST URL (default $IMOS_URL or http://127.0.0.1:8000; key from $IMOS_API_KEY)")
    q.add_argument("--org", default=None, help="CVAT organization slug")
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from service.integrations.cvat_propagate import propagate
    from service.rest_client import RestClient

    client = _cvat_client(args.server)
    service = RestClient(args.service, os.environ.get("IMOS_API_KEY"))
    try:
        if args.org:
            client.organization_slug = args.org
        target = client.jobs.retrieve(args.job) if args.job is not None else client.tasks.retrieve(args.task)
        if args.job is not None and int(target.task_id) != args.task:
            raise InvalidInput(f"job {args.job} belongs to task {target.task_id}, not {args.task}")
        outcome = propagate(target, args.frame, lambda frames, mask, k: service.segment(frames, mask, k))
    finally:
        service.close()
        client.close()
    shapes = sum(outcome.shapes.values())
    print(f"uploaded {shapes} shapes over {outcome.frames} frames "
          f"({', '.join(f'object {o}: {n}' for o, n in outcome.shapes.items())}) with model {service.model}")
    return 0


def _cvat_client(server: str) -> Any:
    """A logged-in cvat-sdk client: $CVAT_ACCESS_TOKEN, else $CVAT_USER and $CVAT_PASSWORD (as cvat-cli reads)."""
    try:
        from cvat_sdk import make_client
    except ImportError:
        raise InvalidInput("imos cvat needs cvat-sdk: pip install 'imos-serve[cvat]'") from None
    token = os.environ.get("CVAT_ACCESS_TOKEN")
    if token:
        return make_client(server, access_token=token)
    user, password = os.environ.get("CVAT_USER"), os.environ.get("CVAT_PASSWORD")
    if not (user and password):
        raise InvalidInput("set CVAT_ACCESS_TOKEN (a personal access token), or CVAT_USER and CVAT_PASSWORD")
    return make_client(server, credentials=(user, password))
