"""netkit-cni: the CNI plugin (spec 1.0, with STATUS and GC of 1.1) on top of netkit's engine."""
