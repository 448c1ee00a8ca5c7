"""Errors as values a person can act on: one line, and the exit code the CLI uses."""


class NetkitError(Exception):
    """Base class: `str(err)` is the one line shown to the user."""

    exit_code = 1

    def __str__(self) -> str:
        # Messages quote what the user typed; a newline in it must not split the line
        # (nor let input forge a second line of output): control characters are escaped.
        text = super().__str__()
        return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class UserError(NetkitError):
    """Bad input: wrong name, CIDR, port spec, unknown object ... (exit 2)."""

    exit_code = 2


class NotFound(UserError):
    """A named network, container, bridge or PID does not exist (exit 2)."""


class Conflict(UserError):
    """The request clashes with existing state: duplicate name, address or port in use (exit 2)."""


class EnvError(NetkitError):
    """The environment cannot do it: not root, missing kernel feature or tool (exit 1)."""

    exit_code = 1


class KernelError(NetkitError):
    """The kernel refused a change netkit expected to work (exit 1)."""

    exit_code = 1
