"""The read-only web UI of the registry: `modelreg ui`.

Called by `modelreg.cli.main` (the `ui` subcommand), which builds one `modelreg.sdk.client.Client`
from the user's kubeconfig (impersonation honoured, as every other command) or, in the cluster,
from the pod's read-only ServiceAccount, and hands it to `modelreg.ui.server.serve`.

Layers, one way: `command` (the CLI's entry: address policy, identity) -> `server` (aiohttp
routes, errors mapped once) -> `data` (the SDK calls, off the event loop) -> `present` (pure
derivations: who approved, gates, best metrics, live cells) -> `pages`, `version_page`,
`error_pages`, `parts`, `charts`, `layout` (pure HTML and inline SVG, everything escaped). `rbac`
turns the API server's Forbidden message into the permission that is missing. Assets are in
`static/`, served by the package itself: no CDN, no framework; pages work without JavaScript.
"""
