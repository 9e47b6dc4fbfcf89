"""The error pages: not found, permission denied (naming the missing permission), other errors.

Called by `modelreg.ui.server`'s error boundary only. Pure: message in, HTML out.
"""

from __future__ import annotations

from modelreg.ui.layout import Safe, link, page, tag
from modelreg.ui.parts import MODELS_HREF, Frame
from modelreg.ui.rbac import MissingPermission


def not_found_page(message: str, frame: Frame) -> Safe:
    body = tag("p", message) + tag("p", link(MODELS_HREF, "Back to the models"))
    return page(
        "Not found",
        body,
        crumbs=[(MODELS_HREF, "Models")],
        namespace=frame.namespace,
        identity=frame.identity,
    )


def forbidden_page(message: str, missing: MissingPermission | None, frame: Frame) -> Safe:
    if missing is None:
        body = tag("p", "The API server refused this request:") + tag("pre", message, cls="message")
    else:
        body = (
            tag("p", missing.sentence(), cls="lead", id="missing-permission")
            + tag("p", missing.ask() + ".")
            + tag("p", "The rule a cluster administrator can add to a Role bound to you:")
            + tag("pre", missing.rule(), cls="message")
            + tag(
                "details",
                Safe(
                    tag("summary", "The API server's message") + tag("pre", message, cls="message")
                ),
            )
        )
    body += tag(
        "p", "This UI acts with your Kubernetes identity: it sees what you may see, nothing more."
    )
    return page(
        "Permission denied",
        body,
        crumbs=[(MODELS_HREF, "Models")],
        namespace=frame.namespace,
        identity=frame.identity,
    )


def error_page(title: str, message: str, frame: Frame) -> Safe:
    body = tag("p", message) + tag(
        "p", "Try again in a moment; the details are in the UI server's log."
    )
    return page(
        title,
        body,
        crumbs=[(MODELS_HREF, "Models")],
        namespace=frame.namespace,
        identity=frame.identity,
    )
