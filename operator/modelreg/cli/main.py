"""The `modelreg` command (also `kubectl-modelreg`, so `kubectl modelreg ...` works).

Entry point `main()` is installed by pyproject's [project.scripts]. Each subcommand parses its
arguments, makes one or two `modelreg.sdk.client.Client` calls and renders the result with
`modelreg.cli.output` (`-o table|json|yaml`). Errors: every `ModelregError` is printed as
`error: <message>` on stderr and mapped to its exit code; no traceback for a user's mistake
(`--debug` shows one). Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 timeout,
5 precondition failed (blocked, no storage, no credentials, digest mismatch), 6 permission denied,
130 interrupted. Reference: docs/cli.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn, TextIO

import yaml

from modelreg import __version__
from modelreg.api.models import Phase, Stage
from modelreg.cli import output
from modelreg.cli.progress import ProgressBar
from modelreg.sdk import signature as sigs
from modelreg.sdk.client import Client, is_uri_ref, parse_stage, parse_version_ref
from modelreg.sdk.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PRECONDITION,
    EXIT_USAGE,
    InvalidArgument,
    ModelNotFound,
    ModelregError,
    NotFound,
)

ClientFactory = Callable[[argparse.Namespace], Client]


# -- argument parsing ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n")


def _common(suppress: bool) -> _Parser:
    """Connection and output options, accepted before or after the subcommand (kubectl style)."""
    d: Any = argparse.SUPPRESS if suppress else None
    p = _Parser(add_help=False)
    g = p.add_argument_group("connection and output")
    g.add_argument("-n", "--namespace", default=d, help="namespace (default: the context's)")
    g.add_argument("--context", default=d, help="kubeconfig context to use")
    g.add_argument("--kubeconfig", default=d, help="path to the kubeconfig (default: $KUBECONFIG)")
    g.add_argument(
        "--as",
        dest="as_user",
        metavar="USER",
        default=d,
        help="act as this user (impersonation, like kubectl; overrides the kubeconfig's `as`)",
    )
    g.add_argument(
        "--as-group",
        dest="as_groups",
        metavar="GROUP",
        action="append",
        default=d,
        help="act as a member of this group; repeat for several (needs --as or `as`)",
    )
    g.add_argument("--as-uid", dest="as_uid", metavar="UID", default=d, help="act with this UID")
    g.add_argument(
        "--s3-endpoint",
        default=d,
        help="object-store endpoint as seen from here (default: $MODELREG_S3_ENDPOINT, then the "
        "Model's spec.storage.endpoint)",
    )
    g.add_argument(
        "-o",
        "--output",
        choices=["table", "json", "yaml"],
        default=argparse.SUPPRESS if suppress else "table",
        help="output format (default: table)",
    )
    g.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if suppress else False,
        help="show tracebacks",
    )
    return p


def _version_arg(value: str) -> int:
    m = re.fullmatch(r"v?([0-9]+)", value.strip())
    if not m or int(m.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a version number (e.g. 3 or v3)")
    return int(m.group(1))


def _version_or_alias(value: str) -> int | str:
    """A version number, or "@ALIAS" (kept as the string)."""
    if value.startswith("@") and len(value) > 1:
        return value
    return _version_arg(value)


def _kv(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r} is not KEY=VALUE")
    return key.strip(), val.strip()


def _tag(value: str) -> tuple[str, str | None]:
    key, sep, val = value.partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE or KEY, got {value!r}")
    return key, (val if sep else None)


def _metric(value: str) -> tuple[str, float]:
    key, val = _kv(value)
    try:
        return key, float(val)
    except ValueError:
        raise argparse.ArgumentTypeError(f"metric {key!r}: {val!r} is not a number") from None


def build_parser() -> argparse.ArgumentParser:
    prog = "kubectl modelreg" if Path(sys.argv[0]).name.startswith("kubectl-") else "modelreg"
    parser = _Parser(
        prog=prog,
        description="Register, inspect and promote ML model versions on Kubernetes.",
        parents=[_common(suppress=False)],
        epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 timeout, "
        "5 precondition failed/blocked, 6 permission denied.",
    )
    parser.add_argument("--version", action="version", version=f"modelreg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    common = [_common(suppress=True)]

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help_, description=help_, parents=common
        )
        return p

    def ref(p: argparse.ArgumentParser, what: str = "version") -> None:
        p.add_argument("name", metavar="NAME", help=f"{what}: MODEL-vN, or MODEL with VERSION")
        p.add_argument(
            "version",
            metavar="VERSION",
            nargs="?",
            type=_version_or_alias,
            help="e.g. 3 or @champion",
        )

    p = cmd("register", "upload an artifact and create the next version of a model")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("path", metavar="PATH", help="a model file, or a directory (sent as a tar)")
    p.add_argument("-m", "--metric", type=_metric, action="append", default=[], help="KEY=NUMBER")
    p.add_argument("--metrics-file", help="JSON or YAML file of {metric: number}")
    p.add_argument("-p", "--param", type=_kv, action="append", default=[], help="KEY=VALUE")
    p.add_argument("-l", "--lineage", type=_kv, action="append", default=[], help="KEY=VALUE")
    p.add_argument("--framework", default="", help="e.g. sklearn, xgboost, pytorch")
    p.add_argument(
        "--format", help="onnx|sklearn|skops|xgboost|lightgbm|custom (default: by suffix)"
    )
    p.add_argument("--stage", help="desired stage at creation (None|Staging|Production)")
    p.add_argument("--description", default="")
    p.add_argument("--version", dest="pin", type=_version_arg, help="this number, not the next")
    p.add_argument("--wait", action="store_true", help="wait until verified (or the stage is held)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for --wait (default 300)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group(
        "training environment (spec.environment; its packages are audited for vulnerabilities)"
    )
    packages = g.add_mutually_exclusive_group()
    packages.add_argument(
        "--requirements",
        metavar="FILE",
        help="pip requirements file whose requirements are all pinned with == (pip freeze)",
    )
    packages.add_argument(
        "--capture-env",
        action="store_true",
        help="record the Python running this command and every package installed in it (run "
        "it from the training environment: python -m modelreg.cli register ...)",
    )
    g.add_argument("--python", metavar="X.Y.Z", help="the Python version trained with")
    g.add_argument("--image", metavar="NAME@sha256:DIGEST", help="the training image, by digest")
    g = p.add_argument_group(
        "signature (spec.signature: the inputs and outputs the model server reports; read from "
        "the graph of an ONNX file unless one of these is given)"
    )
    signature = g.add_mutually_exclusive_group()
    signature.add_argument(
        "--signature",
        metavar="FILE",
        help='JSON or YAML {"inputs": [{"name", "datatype", "shape"}], "outputs": [...]}',
    )
    signature.add_argument(
        "--no-signature", action="store_true", help="record no signature, not even from ONNX"
    )

    p = cmd("list", "list model versions (of one model, or of the namespace), filtered")
    p.add_argument("model", metavar="MODEL", nargs="?")
    p.add_argument("--stage", action="append", default=[], help="STAGE (repeat for any of them)")
    p.add_argument("--phase", action="append", default=[], help="PHASE[,PHASE] (e.g. Serving)")
    p.add_argument(
        "--tag", type=_tag, action="append", default=[], help="KEY=VALUE or KEY (a Model tag)"
    )
    p.add_argument("--alias", help="only the version this alias names")
    p.add_argument("--where", action="append", default=[], help="METRIC OP NUMBER, e.g. 'auc>=0.9'")

    cmd("models", "list models")

    p = cmd("get", "show a model version, or a model and its versions")
    ref(p, "a model or a version")

    p = cmd("promote", "ask for Production (or --stage) and wait until the version serves")
    ref(p)
    p.add_argument("--stage", default="Production", help="Production (default) or Staging")
    p.add_argument(
        "--keep", action="store_true", help="do not archive the previous production version"
    )
    p.add_argument(
        "--reason", help="why, recorded in the history beside who asked (at most 1024 characters)"
    )
    p.add_argument("--no-wait", action="store_true", help="return once the request is recorded")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")

    p = cmd("archive", "set a version's desired stage to Archived")
    ref(p)
    p.add_argument(
        "--reason", help="why, recorded in the history beside who asked (at most 1024 characters)"
    )

    p = cmd("rollback", "archive the version serving production; the previous one takes over")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--to", type=_version_arg, help="the version to roll back to")
    p.add_argument(
        "--reason", help="why, recorded in the history beside who asked (at most 1024 characters)"
    )
    p.add_argument("--no-wait", action="store_true", help="return once the request is recorded")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")

    p = cmd("alias", "set, remove or list a model's aliases (like MLflow's @champion)")
    actions = p.add_subparsers(dest="alias_action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    q = actions.add_parser("set", help="point ALIAS at VERSION", parents=common)
    q.add_argument("model", metavar="MODEL")
    q.add_argument("alias", metavar="ALIAS")
    q.add_argument("version", metavar="VERSION", type=_version_arg)
    q = actions.add_parser("rm", help="remove ALIAS", parents=common)
    q.add_argument("model", metavar="MODEL")
    q.add_argument("alias", metavar="ALIAS")
    q = actions.add_parser(
        "list", help="the model's aliases and whether they resolve", parents=common
    )
    q.add_argument("model", metavar="MODEL")

    p = cmd("history", "stage history of a version, or of all versions of a model")
    ref(p, "a model or a version")

    p = cmd("compare", "metrics of several versions side by side")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("versions", metavar="VERSION", nargs="*", type=_version_arg)
    p.add_argument("--plot", metavar="FILE.png", help="also draw the metrics to this file")

    p = cmd("gc", "orphaned artifacts under a model's storage prefix (no version references them)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--dry-run", action="store_true", help="report them; delete nothing")
    p.add_argument(
        "--min-age",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="skip objects newer than this (a registration in flight; default 3600)",
    )

    p = cmd("download", "fetch a version's artifact, checked against its sha256")
    ref(p, "a version (MODEL-vN, MODEL@ALIAS, models:/MODEL/N)")
    p.add_argument(
        "--out",
        dest="dest",
        metavar="PATH",
        help="a file, or a directory to put it in (default: .)",
    )

    p = cmd("verify", "re-hash the stored artifact and compare it with the recorded sha256")
    ref(p)

    p = cmd("wait", "wait for a version's condition or phase")
    ref(p)
    p.add_argument(
        "--for",
        dest="until",
        default="condition=Ready",
        help="condition=TYPE, phase=PHASE[,PHASE] or stage=STAGE (default condition=Ready)",
    )
    p.add_argument("--timeout", type=float, default=300.0)

    p = cmd("import-mlflow", "import models and versions from an MLflow registry")
    p.add_argument("tracking_uri", metavar="TRACKING_URI", help="e.g. sqlite:///mlflow.db, http://")
    p.add_argument("--registry-uri", help="default: the tracking URI")
    p.add_argument("--model", dest="names", action="append", help="only this registered model")
    p.add_argument(
        "--map", type=_kv, action="append", default=[], help="MLFLOW_NAME=MODEL naming override"
    )
    p.add_argument("--storage-prefix", help="s3://bucket/prefix/ for models created by the import")
    p.add_argument("--storage-endpoint", help="spec.storage.endpoint of created models")
    p.add_argument("--storage-region", help="spec.storage.region of created models")
    p.add_argument("--secret", help="spec.storage.secretRef of created models")
    p.add_argument(
        "--alias", type=_kv, action="append", default=[], help="ALIAS=STAGE (adds to the defaults)"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be imported")

    p = cmd("serve", "run the model server in the foreground (`modelreg serve --help`)")

    p = cmd("ui", "serve the read-only web UI (loopback only; acts as you, --as honoured)")
    p.add_argument("--address", help="address to bind (default 127.0.0.1; see --in-cluster)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free one)")
    p.add_argument(
        "--in-cluster",
        "--read-only-service-account",
        dest="in_cluster",
        action="store_true",
        help="act as this pod's read-only ServiceAccount (the chart), may bind any address",
    )
    return parser


# -- commands ---------------------------------------------------------------------------------------


def _default_client(args: argparse.Namespace) -> Client:
    return Client(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        s3_endpoint=args.s3_endpoint,
        as_user=args.as_user,
        as_groups=args.as_groups or (),
        as_uid=args.as_uid,
    )


class App:
    """One invocation: arguments, a lazily made Client, and the output stream."""

    def __init__(
        self, args: argparse.Namespace, make_client: ClientFactory, out: TextIO, err: TextIO
    ) -> None:
        version = getattr(args, "version", None)
        if isinstance(version, str):  # MODEL @ALIAS: the same as MODEL@ALIAS
            args.name, args.version = f"{args.name}{version}", None
        self.args = args
        self._make_client = make_client
        self._client: Client | None = None
        self.out = out
        self.err = err

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = self._make_client(self.args)
        return self._client

    @property
    def structured(self) -> bool:
        return bool(self.args.output in ("json", "yaml"))

    def emit(self, data: Any, text: str) -> None:
        self.out.write((output.dump(data, self.args.output) if self.structured else text) + "\n")

    def note(self, message: str) -> None:
        self.err.write(message + "\n")

    def version_ref(self) -> tuple[str, int | None]:
        name, version = self.args.name, self.args.version
        if version is None and is_uri_ref(name):
            return self.client.resolve(name)
        if version is None and parse_version_ref(name) is None:
            raise InvalidArgument(
                f"{name!r} names no version: give MODEL VERSION (e.g. {name} 3), {name}-v3 "
                f"or {name}@ALIAS"
            )
        return name, version

    # -- the commands ------------------------------------------------------------------------------

    def register(self) -> int:
        a = self.args
        metrics: dict[str, float] = {}
        if a.metrics_file:
            metrics.update(_read_metrics(Path(a.metrics_file)))
        metrics.update(dict(a.metric))
        signature: sigs.Signature | Literal["auto"] | None = "auto"
        if a.no_signature:
            signature = None
        elif a.signature:
            signature = _read_signature(Path(a.signature))
        bar = ProgressBar(f"uploading {Path(a.path).name}", self.err, enabled=not a.no_progress)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", sigs.SignatureWarning)
            mv = self.client.register(
                a.model,
                a.path,
                metrics=metrics,
                params=dict(a.param),
                lineage=dict(a.lineage),
                framework=a.framework,
                format=a.format,
                stage=a.stage,
                description=a.description,
                version=a.pin,
                progress=bar,
                environment="current" if a.capture_env else None,
                requirements=a.requirements,
                python=a.python,
                image=a.image,
                signature=signature,
            )
        bar.done()
        env = mv.spec.environment
        if env is not None:
            recorded = [f"python {env.python}"] if env.python else []
            recorded += [f"{len(env.packages)} package(s)"] if env.packages else []
            recorded += [f"image {env.image}"] if env.image else []
            self.note(f"environment: {', '.join(recorded)}")
        for w in caught:
            if issubclass(w.category, sigs.SignatureWarning):
                self.note(f"signature: {w.message}")
            else:  # not ours: shown as it would have been
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
        if mv.spec.signature is not None:
            self.note(f"signature: {sigs.summary(mv.spec.signature)}")
        if a.wait:
            stage = parse_stage(a.stage) if a.stage else Stage.NONE
            if stage == Stage.PRODUCTION:
                mv = self.client.wait(mv.metadata.name, phase=Phase.SERVING, timeout=a.timeout)
            elif stage == Stage.STAGING:
                mv = self.client.wait(mv.metadata.name, stage=stage, timeout=a.timeout)
            else:
                mv = self.client.wait(
                    mv.metadata.name, condition="ArtifactVerified", timeout=a.timeout
                )
        self.emit(
            mv.wire(),
            f"registered {mv.metadata.name}: {mv.spec.artifact.uri} "
            f"sha256:{mv.spec.artifact.sha256[:12]}"
            + (f" ({mv.status.phase.value})" if mv.status.phase else ""),
        )
        return EXIT_OK

    def list(self) -> int:
        a = self.args
        versions = self.client.search(
            a.model,
            stage=a.stage,
            phase=[p for item in a.phase for p in item.split(",") if p.strip()],
            tags=dict(a.tag),
            alias=a.alias,
            where=a.where,
        )
        gates: dict[str, list[str]] = {}
        if not self.structured:
            try:
                for m in self.client.list_models():
                    gates[m.metadata.name] = [g.metric for g in m.spec.promotion.gates]
            except ModelregError:
                pass  # the table is still useful without gate ordering
        text = output.versions_table(versions, gates) if versions else "No versions found."
        self.emit([mv.wire() for mv in versions], text)
        return EXIT_OK

    def models(self) -> int:
        models = self.client.list_models()
        text = output.models_table(models) if models else "No models found."
        self.emit([m.wire() for m in models], text)
        return EXIT_OK

    def get(self) -> int:
        name, version = self.args.name, self.args.version
        if version is None and is_uri_ref(name):
            name, version = self.client.resolve(name)
        if version is None and parse_version_ref(name) is None:
            mdl = self.client.get_model(name)
            versions = self.client.list(name)
            self.emit(mdl.wire(), output.describe_model(mdl, versions))
            return EXIT_OK
        try:
            mv = self.client.get(name, version)
        except NotFound:
            if version is not None:
                raise
            try:  # a Model whose name merely looks like "<x>-v<n>"
                mdl = self.client.get_model(name)
            except ModelNotFound:
                raise NotFound(f"no model version or model named {name!r}") from None
            self.emit(mdl.wire(), output.describe_model(mdl, self.client.list(name)))
            return EXIT_OK
        self.emit(mv.wire(), output.describe_version(mv))
        return EXIT_OK

    def promote(self) -> int:
        a = self.args
        name, version = self.version_ref()
        stage = parse_stage(a.stage)
        if stage not in (Stage.PRODUCTION, Stage.STAGING):
            raise InvalidArgument("promote takes --stage Production or Staging; see `archive`")
        wait = not a.no_wait
        if wait:
            self.note(f"waiting up to {a.timeout:g}s for the operator...")
        result = self.client.promote(
            name,
            version,
            stage=stage,
            archive_previous=not a.keep,
            wait=wait,
            timeout=a.timeout,
            reason=a.reason,
        )
        mv = result.version
        lines = [
            f"{mv.metadata.name}: desired stage {stage.value}"
            + (f", now {mv.status.phase.value}" if wait and mv.status.phase else "")
        ]
        lines += [f"archived {n}" for n in result.archived]
        if result.left_requesting:
            lines.append(
                f"still asking for Production (will be Superseded): "
                f"{', '.join(result.left_requesting)}"
            )
        self.emit(
            {
                "version": mv.wire(),
                "archived": result.archived,
                "stillRequestingProduction": result.left_requesting,
            },
            "\n".join(lines),
        )
        return EXIT_OK

    def archive(self) -> int:
        name, version = self.version_ref()
        mv = self.client.archive(name, version, reason=self.args.reason)
        self.emit(mv.wire(), f"{mv.metadata.name}: desired stage Archived")
        return EXIT_OK

    def rollback(self) -> int:
        a = self.args
        wait = not a.no_wait
        if wait:
            self.note(f"waiting up to {a.timeout:g}s for the operator...")
        r = self.client.rollback(a.model, to=a.to, wait=wait, timeout=a.timeout, reason=a.reason)
        phase = r.version.status.phase.value if r.version.status.phase else "requested"
        self.emit(
            {"archived": r.archived, "target": r.target, "version": r.version.wire()},
            f"archived {r.archived}; {r.target} takes over production ({phase})",
        )
        return EXIT_OK

    def alias(self) -> int:
        a = self.args
        if a.alias_action == "list":
            mdl = self.client.get_model(a.model)
            self.emit(
                {"aliases": mdl.spec.aliases, "resolved": mdl.status.aliases},
                output.aliases_text(mdl, self.client.list(a.model)),
            )
            return EXIT_OK
        if a.alias_action == "set":
            mdl = self.client.set_alias(a.model, a.alias, a.version)
            self.emit(mdl.wire(), f"{a.model}@{a.alias} -> version {a.version}")
            return EXIT_OK
        mdl = self.client.remove_alias(a.model, a.alias)
        self.emit(mdl.wire(), f"removed {a.model}@{a.alias}")
        return EXIT_OK

    def history(self) -> int:
        records = self.client.history(self.args.name, self.args.version)
        data = [
            {
                "name": r.name,
                "version": r.version,
                "from": r.from_stage.value if r.from_stage else None,
                "stage": r.stage.value,
                "phase": r.phase.value if r.phase else None,
                "at": r.at,
                "by": r.by,
                "requested": r.requested.value if r.requested else None,
                "reason": r.reason,
                "message": r.message,
            }
            for r in records
        ]
        self.emit(data, output.history_table(records) if records else "No history yet.")
        return EXIT_OK

    def compare(self) -> int:
        c = self.client.compare(self.args.model, self.args.versions or None)
        self.emit(output.comparison_data(c), output.comparison_table(c))
        if self.args.plot:
            from modelreg.cli.plot import plot_comparison  # noqa: PLC0415 - matplotlib is heavy

            path = plot_comparison(c, Path(self.args.plot))
            self.note(f"wrote {path}")
        return EXIT_OK

    def gc(self) -> int:
        a = self.args
        report = self.client.gc(a.model, dry_run=a.dry_run, min_age_seconds=a.min_age)
        self.emit(output.gc_data(report), output.gc_text(report, a.dry_run))
        return EXIT_OK

    def download(self) -> int:
        name, version = self.version_ref()
        path = self.client.download(name, version, self.args.dest)
        self.emit({"path": str(path)}, f"wrote {path}")
        return EXIT_OK

    def verify(self) -> int:
        name, version = self.version_ref()
        report = self.client.verify(name, version)
        self.emit(output.verify_data(report), output.verify_text(report))
        return EXIT_OK if report.ok else EXIT_PRECONDITION

    def wait(self) -> int:
        name, version = self.version_ref()
        kind, sep, value = self.args.until.partition("=")
        if not sep or kind not in ("condition", "phase", "stage") or not value:
            raise InvalidArgument("--for takes condition=TYPE, phase=PHASE[,PHASE] or stage=STAGE")
        kwargs: dict[str, Any] = {"timeout": self.args.timeout}
        if kind == "condition":
            kwargs["condition"] = value
        elif kind == "phase":
            kwargs["phase"] = [p for p in value.split(",") if p]
        else:
            kwargs["stage"] = value
        mv = self.client.wait(name, version, **kwargs)
        self.emit(mv.wire(), f"{mv.metadata.name}: {self.args.until} met")
        return EXIT_OK

    def ui(self) -> int:
        from modelreg.ui import command  # noqa: PLC0415 - the server (aiohttp) only for `ui`

        return command.run(self.args, self._make_client, self.err)

    def import_mlflow(self) -> int:
        a = self.args
        aliases: dict[str, Stage] = {}
        from modelreg.sdk.mlflow_import import (  # noqa: PLC0415 - mlflow is optional
            DEFAULT_ALIAS_STAGES,
            ImportedVersion,
        )

        aliases.update(DEFAULT_ALIAS_STAGES)
        for alias, stage in a.alias:
            aliases[alias.lower()] = parse_stage(stage)

        def show(item: ImportedVersion) -> None:
            if not self.structured:
                target = item.target or "-"
                detail = f" ({item.detail})" if item.detail else ""
                self.out.write(
                    f"{item.action:<12} {item.source} -> {target} [{item.stage.value}]{detail}\n"
                )
                self.out.flush()

        report = self.client.import_mlflow(
            a.tracking_uri,
            registry_uri=a.registry_uri,
            names=a.names,
            model_map=dict(a.map),
            storage_prefix=a.storage_prefix,
            storage_endpoint=a.storage_endpoint,
            storage_region=a.storage_region,
            secret_name=a.secret,
            alias_stages=aliases,
            dry_run=a.dry_run,
            on_version=show,
        )
        data = {
            "modelsCreated": report.models_created,
            "versions": [
                {
                    "source": v.source,
                    "target": v.target,
                    "action": v.action,
                    "stage": v.stage.value,
                    "detail": v.detail,
                }
                for v in report.versions
            ],
            "aliases": report.aliases,
            "aliasesSkipped": report.aliases_skipped,
        }
        created = len(report.created)
        summary = (
            f"{'would create' if a.dry_run else 'created'} {len(report.models_created)} model(s), "
            f"{created if not a.dry_run else sum(v.action == 'would-create' for v in report.versions)}"
            f" version(s); {sum(v.action == 'exists' for v in report.versions)} already imported"
        )
        if self.structured:
            self.emit(data, "")
            return EXIT_OK
        for model, carried in sorted(report.aliases.items()):
            pairs = ", ".join(f"@{alias} -> v{n}" for alias, n in sorted(carried.items()))
            self.out.write(f"aliases      {model}: {pairs}\n")
        for skipped in report.aliases_skipped:
            self.out.write(f"alias not carried over: {skipped}\n")
        self.out.write(summary + "\n")
        return EXIT_OK


_VALUED = frozenset(
    {
        "-n",
        "--namespace",
        "--context",
        "--kubeconfig",
        "--as",
        "--as-group",
        "--as-uid",
        "--s3-endpoint",
        "-o",
        "--output",
    }
)


def _serve_args(argv: Sequence[str]) -> list[str] | None:
    """The arguments after `serve` when `serve` is the command, else None."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "serve":
            return list(argv[i + 1 :])
        if arg in _VALUED:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return None
    return None


def _serve(argv: list[str], err: TextIO) -> int:
    try:
        runtime = importlib.import_module("modelreg.runtime")
        runtime_main = runtime.main
    except (ImportError, AttributeError) as e:
        err.write(
            f"error: the model server is not available ({e}): pip install 'modelreg[runtime]'\n"
        )
        return EXIT_ERROR
    return int(runtime_main(argv) or 0)


def _read_signature(path: Path) -> sigs.Signature:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise InvalidArgument(f"--signature: cannot read {path}: {why}") from e
    return sigs.parse(text, source=str(path))


def _read_metrics(path: Path) -> dict[str, float]:
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror or e}") from e
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as e:
        raise InvalidArgument(f"{path}: not valid JSON/YAML: {e}") from e
    if not isinstance(data, dict):
        raise InvalidArgument(f"{path}: expected a mapping of metric names to numbers")
    out: dict[str, float] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidArgument(f"{path}: metric {key!r} is not a number: {value!r}")
        out[str(key)] = float(value)
    return out


def run(
    argv: Sequence[str] | None = None,
    *,
    make_client: ClientFactory = _default_client,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Parse `argv`, run the command, return the exit code (tests call this directly)."""
    out = out or sys.stdout
    err = err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    runtime_args = _serve_args(argv)
    if runtime_args is not None:
        # Everything after `serve` belongs to the model server's own parser (its --help too).
        return _serve(runtime_args, err)
    parser = build_parser()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors, --help, --version
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    app = App(args, make_client, out, err)
    handler = getattr(app, args.command.replace("-", "_"))
    try:
        return int(handler())
    except ModelregError as e:
        if args.debug:
            traceback.print_exc(file=err)
        err.write(f"error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        err.write("interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `modelreg list | head`: the reader left; nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:
        if args.debug:
            traceback.print_exc(file=err)
        else:
            err.write("(run with --debug for the traceback)\n")
        err.write(f"error: unexpected {type(e).__name__}: {e}\n")
        return EXIT_ERROR


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
