"""``annot serve``: the store's JSON API and web page."""

from __future__ import annotations

from typing import Annotated

import typer

from annot.cli.app import StoreOpt, app, handle_errors
from annot.cli.render import say


@app.command()
@handle_errors
def serve(
    store: StoreOpt,
    host: Annotated[str, typer.Option(help="The address to listen on. Anything but loopback needs a token for "
                                           "writes.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.")] = 8000,
    token: Annotated[str | None, typer.Option(envvar="ANNOT_TOKEN", help="The token writes must carry "
                                              "(Authorization: Bearer TOKEN). Default off loopback: a new one, "
                                              "shown at start.")] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest upload, in MiB.")] = 32.0,
    max_megapixels: Annotated[float, typer.Option("--max-megapixels", help="Largest upload, in millions of "
                                                                             "pixels (checked before decoding).")] = 64.0,
    allow_host: Annotated[list[str] | None, typer.Option(
        "--allow-host", help="A host name requests may use to reach the server besides its address (and localhost "
                             "on loopback), e.g. the machine's name on a home network (repeatable). Requests naming "
                             "any other host are refused, so that no other web site can reach the server.")] = None,
) -> None:
    """Serve the store: a JSON API under /v1 (OpenAPI explorer at /docs) and a web page at / to search the photos,
    drop one to see its tags, and confirm or reject tags. Works offline.

    Safe by default: it listens on 127.0.0.1, answers only requests that name it as their host, refuses requests
    that pages of other web sites make, and bounds every request's size and work."""

    from annot.serve import Limits
    from annot.serve import serve as run

    if max_upload_mb <= 0 or max_megapixels <= 0:
        raise typer.BadParameter("--max-upload-mb and --max-megapixels must be above 0")
    run(store, host=host, port=port, token=token,
        limits=Limits(int(max_upload_mb * 1024 * 1024), int(max_megapixels * 1_000_000)),
        allow_hosts=tuple(allow_host or ()), announce=say)
