"""`clipforge serve DIR [--host 127.0.0.1] [--port 8000]`: HTTP API + web page over an index."""

from __future__ import annotations

import argparse

from ..serve import Limits, create_app, serve
from ..serve.guard import LOOPBACK_HOSTS
from .common import add_model_arguments

HELP = "serve an index over HTTP: /search, /classify, /embed, /image/{id}, a web page at / and docs at /docs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="index directory (from `clipforge index build`)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1 (default 8000)")
    parser.add_argument("--model", default=None, help="override the checkpoint recorded in the index")
    add_model_arguments(parser, with_model=False, engine=True, architecture=False)
    parser.add_argument("--templates", default="openai7", help="default prompt templates for /classify")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest accepted image upload")
    parser.add_argument("--max-k", type=int, default=100, help="most results per search")
    parser.add_argument("--max-batch", type=int, default=32, help="most texts per /embed request")
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a name clients may use in the Host header (repeatable; default: the loopback names and --host)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="server log level (default info)",
    )


def run(args: argparse.Namespace) -> int:

    if not 1 <= args.port <= 65535:
        raise ValueError("--port must be between 1 and 65535")
    if args.max_upload_mb <= 0 or args.max_k < 1 or args.max_batch < 1:
        raise ValueError("--max-upload-mb, --max-k and --max-batch must be positive")
    upload = int(args.max_upload_mb * 2**20)
    hosts = [*LOOPBACK_HOSTS, *args.allowed_host]
    if args.host not in ("0.0.0.0", "::", ""):
        hosts.append(args.host)
    elif not args.allowed_host:
        print("note: bound to all interfaces; only loopback Host names are accepted until you add --allowed-host NAME")
    limits = Limits(max_image_bytes=upload, max_body_bytes=upload + 2**20, max_k=args.max_k, max_texts=args.max_batch)
    app = create_app(
        args.directory,
        limits,
        model=args.model,
        device=args.device,
        templates=args.templates,
        precision=args.precision,
        backend=args.backend,
        allowed_hosts=hosts,
    )
    print(f"serving {args.directory} on http://{args.host}:{args.port}/  (API docs: /docs)")
    serve(app, args.host, args.port, args.log_level)
    return 0
