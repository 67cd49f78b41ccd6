"""The ``emr`` command. Each command parses its options, calls one function and prints.

Errors from the project's error tree become one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from emr.config import Settings
from emr.errors import EmrError

app = typer.Typer(help="Vietnam EMR interoperability simulator: coordination hub, result reuse, referral scenarios.",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True)
out = Console()


def _fail(error: EmrError) -> None:
    err.print(f"[bold red]error:[/] {error}", highlight=False)
    raise typer.Exit(2)


@app.command()
def serve(
    db: Annotated[str | None, typer.Option(help="Database URL (default: EMR_DATABASE_URL or sqlite:///emr-hub.db)")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
) -> None:
    """Start the coordination hub (FHIR R4B at /fhir) with the facility registry loaded."""
    import uvicorn

    from emr.hub.app import create_app

    settings = Settings()
    overrides = {"base_url": f"http://{host}:{port}/fhir"}
    if db:
        overrides["database_url"] = db
    settings = settings.model_copy(update=overrides)
    try:
        application = create_app(settings)
    except EmrError as error:
        _fail(error)
    out.print(f"Hub listening on [bold]{settings.base_url}[/] (database {settings.database_url})")
    uvicorn.run(application, host=host, port=port, log_level="warning")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="emr")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())



