"""netkit: Docker's network layer (bridges, veths, netns, IPAM, NAT, tracing) as a readable toolkit."""

__version__ = "0.1.0"
