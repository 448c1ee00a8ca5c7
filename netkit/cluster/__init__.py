"""Several hosts sharing overlay networks through an etcd store (docs/multihost.md)."""
