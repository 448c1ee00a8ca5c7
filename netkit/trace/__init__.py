"""The packet tracer: capture on every hop of a container's path at once, match each packet
across the hops, make NAT and bridge forwarding visible, and report (text, JSON, pcap, SVG).

capture.py (raw sockets, kernel BPF and timestamps) and path.py (which interfaces) import
nothing heavy; Scapy and pyroute2 are imported by correlate.py only after the capture.
"""
