"""`modelreg ui`: checks the address, says who the UI acts as, builds the Client, serves.

Called by `modelreg.cli.main` (the `ui` subcommand: --address, --port, --in-cluster and the
common connection options). Two modes:

- local (the default): binds loopback only and acts as YOU, with your kubeconfig; `--as` /
  `--as-group` (or the kubeconfig user's `as`) impersonate exactly as every other command does.
  Requests must name a loopback host (no DNS rebinding from a web page).
- `--in-cluster` (the chart's Deployment): acts as the pod's own read-only ServiceAccount, never
  impersonating anyone, and may bind another address (0.0.0.0 behind a ClusterIP Service, for
  `kubectl port-forward`). Whoever can reach it sees what that ServiceAccount may read.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import yaml

from modelreg.adapters import impersonation
from modelreg.sdk.client import Client
from modelreg.sdk.errors import EXIT_USAGE, InvalidArgument
from modelreg.ui import server

DEFAULT_ADDRESS = "127.0.0.1"


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_address(args: argparse.Namespace) -> str:
    address = args.address or DEFAULT_ADDRESS
    if not is_loopback(address) and not args.in_cluster:
        raise InvalidArgument(
            f"refusing to serve on {address}: local mode acts with your credentials, so it binds "
            "loopback only (use kubectl port-forward to the chart's in-cluster UI to share it)"
        )
    if args.in_cluster and (args.as_user or args.as_groups or args.as_uid):
        raise InvalidArgument("--in-cluster acts as its own ServiceAccount: --as is not allowed")
    if not 0 <= args.port <= 65535:
        raise InvalidArgument(f"--port {args.port} is not a port number")
    return address


def _kubeconfig_user(kubeconfig: str | None, context: str | None) -> str | None:
    """The user entry the (first) kubeconfig's context names, as `kubectl config view` shows."""
    path = kubeconfig or (os.environ.get("KUBECONFIG") or "~/.kube/config").split(os.pathsep)[0]
    try:
        cfg = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    chosen = context or cfg.get("current-context")
    for c in cfg.get("contexts") or []:
        if c.get("name") == chosen:
            user = (c.get("context") or {}).get("user")
            return str(user) if user else None
    return None


def identity(args: argparse.Namespace) -> str:
    """Who the UI acts as, in words, for the banner and the page header."""
    if args.in_cluster:
        return "its read-only ServiceAccount"
    flags = impersonation.Impersonation(user=args.as_user, groups=tuple(args.as_groups or ()))
    try:
        acting = flags.over(impersonation.from_kubeconfig(args.kubeconfig, args.context))
    except impersonation.ImpersonationError:
        acting = flags
    if acting.user:
        groups = f" (groups {', '.join(acting.groups)})" if acting.groups else ""
        return f"{acting.user}{groups}, impersonated"
    user = _kubeconfig_user(args.kubeconfig, args.context)
    return f"kubeconfig user {user}" if user else "your kubeconfig user"


def run(
    args: argparse.Namespace, make_client: Callable[[argparse.Namespace], Client], err: TextIO
) -> int:
    """Serve until interrupted; the exit code (0 on SIGTERM, 130 on Ctrl-C)."""
    try:
        address = check_address(args)
    except InvalidArgument as e:
        err.write(f"error: {e}\n")
        return EXIT_USAGE
    who = identity(args)
    client = make_client(args)

    def announce(url: str) -> None:
        print(f"modelreg ui: serving {url} (namespace {client.namespace}, as {who})", flush=True)

    return server.serve(
        address,
        args.port,
        lambda: client,
        identity=who,
        loopback_only=not args.in_cluster,
        announce=announce,
    )
