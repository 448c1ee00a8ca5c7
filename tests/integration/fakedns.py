"""A tiny upstream resolver for tests, run in a namespace the test made (never a real address):

    python fakedns.py IP=ANSWER [IP=ANSWER ...]

listens on UDP port 53 of each IP and answers an A query for any name under `.example` with
that IP's ANSWER (so a reply tells which upstream was asked), NXDOMAIN for every other name.
Prints "ready" once every socket is bound.
"""
import selectors
import socket
import sys

from dnslib import QTYPE, RCODE, RR, A, DNSRecord


def main(pairs: list[str]) -> None:
    sel = selectors.DefaultSelector()
    for pair in pairs:
        ip, answer = pair.split("=")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((ip, 53))
        sel.register(sock, selectors.EVENT_READ, answer)
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            data, peer = key.fileobj.recvfrom(4096)
            q = DNSRecord.parse(data)
            r = q.reply(aa=0)
            if str(q.q.qname).rstrip(".").endswith(".example"):
                if q.q.qtype == QTYPE.A:
                    r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A(key.data), ttl=0))
            else:
                r.header.rcode = RCODE.NXDOMAIN
            key.fileobj.sendto(r.pack(), peer)


if __name__ == "__main__":
    main(sys.argv[1:])
