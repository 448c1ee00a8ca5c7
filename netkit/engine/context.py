"""What every use case works with, typed: the state store, the config, the host-facts probe, the
executor of plans and the firewall backend, plus the one place that turns a plan into kernel
changes or, with --dry-run, into text.

Everything is made on first use (the root check comes before any file access, and commands that
need no settings never read the config). Unit tests pass their own: a Store in a temporary folder,
a FakeProbe, an executor over fakes and an in-memory firewall, and `derive=False` (no /etc/netns
files, no DNS servers).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable

from netkit import config as config_mod
from netkit.errors import EnvError
from netkit.ops import render_plan
from netkit.state import Store, run_dir

if TYPE_CHECKING:
    from netkit.kernel.executor import Executor
    from netkit.kernel.fw import FirewallBackend
    from netkit.kernel.probe import Probe


# The firewall backend each config asks for, checked once per process: `available()` runs a
# program (`iptables-nft-save`) or loads libnftables, ~6 ms that a long-lived engine (the daemon,
# the Docker driver) would otherwise pay on every change. Keyed by the settings that decide the
# choice, so a config that names another backend (or turns iptables off) is checked afresh.
_FIREWALLS: dict[tuple, tuple] = {}


class _DryRun(Exception):
    """Raised at the end of a dry-run change so that the state transaction rolls back."""


class Context:
    dry_run: bool
    run_dir: str
    derive: bool  # run derived steps (name files, DNS) after the commit
    printed: list[str]  # dry-run: the iproute2/iptables commands the plan stands for
    # (old, new) versions of the one container a change touched: the firewall sync then updates
    # only that container's rules; None means compare everything with the kernel.
    firewall_hint: tuple | None

    def __init__(self, dry_run: bool = False, store: Store | None = None, config: config_mod.Config | None = None,
                 probe: Probe | None = None, executor: Executor | None = None, firewall: FirewallBackend | None = None,
                 run_dir_path: str | None = None, derive: bool = True):
        self.dry_run = dry_run
        self._store = store
        self._config = config
        self._probe = probe
        self._executor = executor
        self._firewall = firewall
        self.firewall_choice = None  # fw.Choice: which backend and why, once chosen from the config
        self.run_dir = run_dir_path or run_dir()
        self.derive = derive
        self.printed = []
        self._applied: list = []
        self._removals: list = []  # deletions run after the commit (journalled for roll-forward)
        self._journalled: list = []  # every step the journal holds (what was applied may be undone)
        self._journal_removals = 0  # how many of _removals the journal on disk holds
        self._token: str | None = None
        self._on_commit: list[Callable[[Context], None]] = []
        self.firewall_hint = None
        self._hint_blocked = False
        # Called once, when a change has committed and before its deletions and derived steps
        # run: a caller that answers someone else (netkit-cni's DEL under netkitd) may let them
        # go then. What still runs holds the state lock, so no netkit command sees it half-way.
        self.on_committed: Callable[[], None] | None = None
        # Called once, when a change that made a hand-over interface has committed (the veth is
        # on its bridge with its rules, the state holds it), before the derived steps (names),
        # with the container, its new endpoint and the default gateway it gives (None: none):
        # a runtime that takes the interface over itself (Docker's Join) may be answered then
        # and work on its end while names are written. Nothing after it undoes the change.
        self.on_handover_ready: Callable[[object, object, str | None], None] | None = None
        self._handover: tuple | None = None  # (container, endpoint, gateway) of handover_made

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store()
        return self._store

    @property
    def config(self) -> config_mod.Config:
        if self._config is None:
            self._config = config_mod.load()
        return self._config

    @property
    def probe(self) -> Probe:
        """Host facts, asked instead of the kernel."""
        if self._probe is None:
            from netkit.kernel.probe import HostProbe

            self._probe = HostProbe()
        return self._probe

    @property
    def firewall(self) -> FirewallBackend:
        """The firewall backend netkit's rules are written to: the config's `firewall_backend`
        (auto: what the host's `iptables` is; "iptables": false: none)."""
        if self._firewall is None:
            from netkit.kernel import fw

            cfg = self.config
            key = (cfg.firewall_backend, cfg.iptables, cfg.source)
            found = _FIREWALLS.get(key)
            if found is None:
                found = fw.for_config(cfg)
                _FIREWALLS[key] = found  # only a backend that works here is remembered
            self._firewall, self.firewall_choice = found
        return self._firewall

    def firewall_why(self) -> str:
        """One line: why this backend (the config key, or what auto found)."""
        if self.firewall_choice is not None:
            return self.firewall_choice.reason
        from netkit.kernel import fw

        return fw.choose(self.config.firewall_backend, self.config.iptables, self.config.source).reason

    def other_firewalls(self) -> list[FirewallBackend]:
        """The kernel backends that are not the active one (where netkit's rules may be left over
        from before a switch). None when the firewall was handed in (unit tests)."""
        if self.firewall_choice is None:
            return []
        from netkit.kernel import fw

        return [fw.get(n) for n in fw.KERNEL_NAMES if n != self.firewall.name]

    def executor(self) -> Executor:
        """Runs plans against the kernel."""
        if self._executor is None:
            from netkit.kernel.executor import kernel_executor

            self._executor = kernel_executor(self.firewall)
        return self._executor

    def close(self) -> None:
        self.close_kernel()
        if self._store is not None:
            self._store.close()

    def close_kernel(self) -> None:
        """Close the netlink handles only. What a one-shot command does at its end: closing the
        state too would checkpoint its WAL (an fsync) on every command, reads included."""
        if self._executor is not None:
            self._executor.close()

    def require_root(self) -> None:
        if os.geteuid() != 0 and not self.dry_run and self._executor is None:
            raise EnvError("netkit must run as root to change network state (try: sudo netkit ...)")

    def apply(self, plan: list) -> None:
        """Run steps now; undone if the change fails later (a firewall step, the commit)."""
        if self.dry_run:
            self.printed.extend(render_plan(plan))
            return
        self._journal_write(apply=plan)  # durable before the first step runs
        self.executor().apply(plan)
        self._applied.extend(plan)

    def handover_made(self, container, endpoint, gateway: str | None) -> None:
        """The change makes a hand-over interface: on_handover_ready is called once it is ready."""
        self._handover = (container, endpoint, gateway)

    def _announce_handover(self) -> None:
        made, self._handover = self._handover, None
        if made is not None and self.on_handover_ready is not None:
            hook, self.on_handover_ready = self.on_handover_ready, None
            try:
                hook(*made)
            except Exception:  # noqa: BLE001 - the caller's business (it answers at its end); the change is saved
                pass

    def remove(self, plan: list) -> None:
        """Deletion steps: run once the state no longer holds the objects (after the commit),
        so a failure earlier in the change can never leave state pointing at deleted objects."""
        if self.dry_run:
            self.printed.extend(render_plan(plan))
            return
        self._removals.extend(plan)
        self._on_commit.append(lambda ctx: ctx.executor().apply_all(plan))

    def after(self, step: Callable[[Context], None]) -> None:
        """Run step(ctx) after the state is committed: derived things (name files, DNS records
        and servers) that `netkit doctor --fix` can always rebuild from the state."""
        if self.derive and not self.dry_run:
            self._on_commit.append(step)

    def container_changed(self, old, new) -> None:
        """Record that only container `old` -> `new` changed (either may be None)."""
        if self._hint_blocked or self.firewall_hint is not None:
            self.network_changed()  # a second change in one command: compare everything
        else:
            self.firewall_hint = (old, new)

    def network_changed(self) -> None:
        self.firewall_hint = None
        self._hint_blocked = True

    # ---- the intent journal (netkit/journal.py) ----------------------------------------------

    def _journal_write(self, apply: list = (), force: bool = False) -> None:
        """Record what this change is about to do (before it does it). Written only when the
        journal gains a step recovery acts on (or `force`): a batch of rules alone changes
        nothing a rollback would do (the reconciler owns rules)."""
        import sys

        from netkit import journal

        self._journalled.extend(apply)
        if not force and not journal.needed(apply):
            return
        if self._token is None:
            self._token = os.urandom(8).hex()
        journal.write(self.store.directory, self._token, " ".join(sys.argv[1:]) or "?", self._journalled,
                      self._removals)
        self._journal_removals = len(self._removals)

    def _journal_seal(self) -> None:
        """Last thing in the transaction: the state says this change committed (if it does)."""
        from netkit import journal

        if self._token is None and not self._removals:
            return
        if len(self._removals) != self._journal_removals:
            self._journal_write(force=True)  # the removals are known now
        self.store.put_meta(journal.META, self._token)

    def _journal_done(self) -> None:
        from netkit import journal

        if self._token is not None:
            journal.clear(self.store.directory)
        self._token = None

    def recover(self) -> list[str]:
        """Finish or undo a change a crash interrupted (its journal is still there); what was
        done, as lines. Call with the state lock held (inside a transaction)."""
        from netkit import journal

        data = journal.read(self.store.directory)
        if data is None:
            return []
        what = journal.describe(data)
        if "damaged" in data:
            raise EnvError(f"the journal {journal.path(self.store.directory)} of an interrupted change is damaged "
                           f"({data['damaged']}): run `netkit doctor`, remove what it lists, then delete the file")
        committed = data.get("token") is not None and self.store.meta(journal.META) == data["token"]
        steps = journal.plan(data, committed)
        if steps:
            try:
                self.executor().apply_all(steps)
            except Exception as err:  # noqa: BLE001 - one line, the journal stays for the next try
                raise EnvError(f"an interrupted change ({what}) could not be "
                               f"{'finished' if committed else 'undone'}: {err}; see `netkit doctor`") from None
        journal.clear(self.store.directory)
        verb = "finished (it had committed)" if committed else "rolled back (it had not committed)"
        return [f"interrupted change {what} {verb}: {len(steps)} step(s)"]

    def _run_after_commit(self) -> None:
        from netkit import faults

        self._applied = []  # committed: the kernel plan stays
        self._announce_handover()
        if self.on_committed is not None:
            hook, self.on_committed = self.on_committed, None
            try:
                hook()
            except Exception:  # noqa: BLE001 - the caller's business; the change is saved
                pass
        failures = []
        for step in self._on_commit:
            try:
                faults.point("after-commit")
                step(self)
            except Exception as err:  # noqa: BLE001 - every step gets its chance
                failures.append(str(err))
        self._journal_done()
        if failures:
            raise EnvError(f"{failures[0]}; the change itself is saved: run `netkit doctor --fix`")

    @contextmanager
    def change(self):
        """One command's change: state transaction + kernel plan; all or nothing."""
        from netkit.engine import reconcile

        from netkit import faults

        self._applied = []
        self._on_commit = []
        self._removals = []
        self._handover = None
        self._journalled = []
        self._journal_removals = 0
        self._token = None
        self.firewall_hint = None
        self._hint_blocked = False
        try:
            with self.store.transaction(after_commit=self._run_after_commit):
                if not self.dry_run:
                    self.recover()  # a change a crash interrupted is finished or undone first
                yield self
                # Every change ends with netkit's rules and host settings matching the new state
                # (a dry run prints the changes instead); a failure here rolls back state and plan.
                reconcile.sync(self)
                if self.dry_run:
                    raise _DryRun
                self._journal_seal()
                faults.point("commit")
        except _DryRun:
            pass
        except BaseException:
            failed = self.executor().undo(self._applied) if self._applied else []
            if self._token is not None and not failed:
                self._journal_done()  # undone: nothing left to finish (else recover() retries)
            raise
        finally:
            self._applied = []
            self._on_commit = []
            self._removals = []
            self._handover = None
            self._journalled = []
