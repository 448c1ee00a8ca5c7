"""The Typer application object and the helpers every command module shares."""
from __future__ import annotations

import typer


def _plain_help_fixes() -> None:
    """Two flaws of Typer 0.20's plain (non-rich) help with Click >= 8.3: Click's Parameter
    init drops the help text TyperArgument set before calling it, and whenever rich is
    installed `[required]` comes out escaped for rich's HTML export as `\\[required]` (importing
    rich, ~50 ms, to do so). Restore the text; tell Typer rich is absent (netkit's help is plain:
    rich_markup_mode=None), so brackets print plainly and rich is never imported."""
    from typer import core

    if getattr(core.TyperArgument, "_netkit_fixed", False):
        return
    init = core.TyperArgument.__init__

    def argument_init(self, *args, help=None, **kwargs):  # noqa: A002 - Typer's keyword
        init(self, *args, help=help, **kwargs)
        self.help = help

    core.TyperArgument.__init__ = argument_init
    # Click >= 8.3 lists documented arguments itself ("Positional arguments"); Typer already does.
    for cls in (core.TyperCommand, core.TyperGroup):
        if hasattr(cls, "format_arguments"):
            cls.format_arguments = lambda self, ctx, formatter: None
    # Read by typer.core only to pick rich help/errors (off here: rich_markup_mode=None) and to
    # escape brackets for rich; typer.main copied it at import for pretty tracebacks (disabled).
    core.HAS_RICH = False
    core.TyperArgument._netkit_fixed = True


_plain_help_fixes()

app = typer.Typer(
    help="netkit: Docker's network layer (bridges, veths, netns, IPAM, NAT) as a readable toolkit.",
    no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False, add_completion=True,
)


def _print_version(value: bool) -> None:
    if value:
        from netkit import __version__

        print(f"netkit version {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", "-v", is_eager=True, callback=_print_version,
                                      help="Print netkit's version and exit.")) -> None:
    """netkit: Docker's network layer (bridges, veths, netns, IPAM, NAT) as a readable toolkit."""


def run_app() -> None:
    """Run the command line; a NetkitError becomes one line on stderr and its exit code (2 bad
    input, 1 environment), Ctrl-C exit 130. Usage errors are Typer's (exit 2)."""
    import sqlite3
    import sys

    from netkit.errors import NetkitError

    try:
        try:
            app()
        finally:
            _close_contexts()
    except NetkitError as err:
        print(f"netkit: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
    except sqlite3.Error as err:  # anything the state module did not already put in words
        from netkit.state import damaged, state_dir

        print(f"netkit: {damaged(state_dir(), str(err))}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("netkit: interrupted", file=sys.stderr)
        sys.exit(130)


def group(name: str, help_text: str) -> typer.Typer:
    sub = typer.Typer(help=help_text, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False)
    app.add_typer(sub, name=name)
    return sub


# The command's contexts, whose netlink handles are closed when it ends: an IPRoute left open is
# closed by the collector at exit, where its asyncio loop may be finalized after that loop's own
# self-pipe socket and then prints "Exception ignored in BaseEventLoop.__del__ ... Invalid file
# descriptor: -1". The state is left to the process's end, as before.
_CONTEXTS: list = []


def context(dry_run: bool = False):
    from netkit.engine.context import Context

    ctx = Context(dry_run=dry_run)
    _CONTEXTS.append(ctx)
    return ctx


def _close_contexts() -> None:
    while _CONTEXTS:
        try:
            _CONTEXTS.pop().close_kernel()
        except Exception:  # noqa: BLE001 - the command's outcome is decided; closing must not change it
            pass


JSON_OPT = typer.Option(False, "--json", help="Print JSON with stable field names.")
DRY_OPT = typer.Option(False, "--dry-run", help="Print the equivalent iproute2 commands; change nothing.")
