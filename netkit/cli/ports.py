"""`netkit publish`, `unpublish`, `port`, `rules`, `doctor`, `reset`: the firewall side."""
