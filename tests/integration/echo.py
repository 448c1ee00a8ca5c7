"""Tiny TCP/UDP echo server and client for tests: `echo.py serve tcp|udp IP PORT` answers
"echo:" + data until killed (the test harness kills what a test started); `echo.py send tcp|udp
IP PORT MSG` prints the reply. Timeouts are generous: CI runs on a loaded machine."""
import socket
import sys


def serve(proto: str, ip: str, port: int) -> None:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    if proto == "tcp":
        s.listen(16)
    print("ready", flush=True)
    while True:
        try:
            if proto == "tcp":
                conn, peer = s.accept()
                with conn:
                    conn.settimeout(20)
                    data = conn.recv(4096)
                    conn.sendall(b"echo:" + data + b" from:" + peer[0].encode())
            else:
                data, peer = s.recvfrom(4096)
                s.sendto(b"echo:" + data + b" from:" + peer[0].encode(), peer)
        except OSError:  # a client that went away: serve the next one
            continue


def send(proto: str, ip: str, port: int, msg: str) -> None:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(20)
    if proto == "tcp":
        s.connect((ip, port))
        s.sendall(msg.encode())
        print(s.recv(4096).decode())
    else:
        s.sendto(msg.encode(), (ip, port))
        print(s.recvfrom(4096)[0].decode())


if __name__ == "__main__":
    mode, proto, ip, port = sys.argv[1:5]
    if mode == "serve":
        serve(proto, ip, int(port))
    else:
        send(proto, ip, int(port), sys.argv[5])
