"""Old name of engine/ports.py, kept so that callers of `netkit.engine.publish.publish(ctx, spec,
name)`, `unpublish` and `port_lines` keep working. The firewall sync, read-back and reset are in
engine/reconcile.py, the firewall findings in engine/doctor.py."""
from __future__ import annotations

from netkit.engine.ports import (allocate, apply_create_options, check_publishable, parse_spec, port_lines, publish,
                                 unpublish)

__all__ = ["allocate", "apply_create_options", "check_publishable", "parse_spec", "port_lines", "publish", "unpublish"]
