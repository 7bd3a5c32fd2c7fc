#!/usr/bin/env python3
"""A TLS client that checks revocation online, as Windows' CryptoAPI or a browser without
stapled OCSP does: while it verifies the server's certificate it opens a new connection to a
responder (OCSP, or the issuer's URL in the AIA extension), asks, and only then sends its
next flight. Its handshake waits on the responder, a wait that looks like a hidden leg to a
sensor that does not see the fetch (stdlib only).

Each connection: TLS to HOST:PORT, one HTTP GET, close. The fetch is a plain HTTP GET of
/ocsp/MS on the responder, which answers after MS milliseconds (a responder or CDN that is
slow or far). --when handshake fetches before the client's Finished (verification inside
the handshake: OpenSSL/NSS callbacks); --when after fetches after the handshake and before
the request (an application that validates the chain itself once the handshake is done:
Schannel's manual validation), so the wait lands on the answer to the server's session
tickets. --when alternate does both, one connection each. --keep-alive fetches over one
connection to the responder kept open, so only the first fetch opens a connection.
"""
import argparse
import http.client
import random
import socket
import ssl
import sys
import time


KEPT = {}  # --keep-alive: the one connection to the responder, reused while it lasts


def fetch(responder, port, ms, keep_alive=False):
    if keep_alive:
        for attempt in (0, 1):
            conn = KEPT.get("conn") or http.client.HTTPConnection(responder, port, timeout=10)
            KEPT["conn"] = conn
            try:
                conn.request("GET", f"/ocsp/{ms}")
                conn.getresponse().read()
                return
            except (http.client.HTTPException, OSError):
                conn.close()  # the responder closed it while idle: a new one
                KEPT.pop("conn", None)
                if attempt:
                    raise
    conn = http.client.HTTPConnection(responder, port, timeout=10)
    try:
        conn.request("GET", f"/ocsp/{ms}", headers={"Connection": "close"})
        conn.getresponse().read()
    finally:
        conn.close()


def one(args, ms, when):
    ctx = ssl.create_default_context(cafile=args.cafile)
    sock = socket.create_connection((args.address, args.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=args.name)
    heard_server = False
    fetched = False
    while True:
        try:
            tls.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        out = outgoing.read()
        # The first flight the client writes after the server's certificate came in is the
        # one verification holds back.
        if out and heard_server and when == "handshake" and not fetched:
            fetch(args.responder, args.responder_port, ms, args.keep_alive)
            fetched = True
        if out:
            sock.sendall(out)
        if done:
            break
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("server closed during the handshake")
        incoming.write(data)
        heard_server = True
    if when == "after":
        fetch(args.responder, args.responder_port, ms, args.keep_alive)
    tls.write(f"GET / HTTP/1.1\r\nHost: {args.name}\r\nConnection: close\r\n\r\n".encode())
    sock.sendall(outgoing.read())
    body = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        incoming.write(data)
        try:
            while True:
                body += tls.read(65536)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
    sock.close()
    return len(body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--port", type=int, default=443)
    ap.add_argument("--name", required=True, help="server name (SNI, certificate)")
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--responder", required=True)
    ap.add_argument("--responder-port", type=int, default=80)
    ap.add_argument("--connections", type=int, default=6)
    ap.add_argument("--responder-ms", default="40:80",
                    help="the responder's time per fetch, drawn from LOW:HIGH ms")
    ap.add_argument("--when", choices=("handshake", "after", "alternate"), default="alternate")
    ap.add_argument("--keep-alive", action="store_true",
                    help="fetch over one connection to the responder kept open (HTTP/1.1 "
                    "keep-alive, as WinHTTP pools it), not a new one each time")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    low, high = (int(v) for v in a.responder_ms.split(":"))
    for i in range(a.connections):
        ms = rng.randint(low, high)
        when = a.when if a.when != "alternate" else ("handshake", "after")[i % 2]
        t0 = time.time()
        n = one(a, ms, when)
        print(f"connection {i}: responder {ms} ms, fetch {when}, {n} bytes, "
              f"{1000 * (time.time() - t0):.0f} ms", flush=True)
        time.sleep(0.5 + 1.5 * rng.random())
    return 0


if __name__ == "__main__":
    sys.exit(main())
