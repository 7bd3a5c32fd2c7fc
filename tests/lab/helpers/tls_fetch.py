#!/usr/bin/env python3
"""One HTTPS GET with Python's ssl module, directly or through a SOCKS5 or HTTP CONNECT proxy.

The lab's TLS scenarios use curl; RWLAB_TLS_CLIENT=python runs this instead, so the hidden leg
is measured on another client's handshake (Python's own I/O loop around OpenSSL). Prints one
line like curl's -w: http=CODE bytes=N tls=SECONDS total=SECONDS.
"""
import argparse
import socket
import ssl
import struct
import sys
import time
import urllib.parse


def socks5(sock, host, port):
    sock.sendall(b"\x05\x01\x00")
    if sock.recv(2) != b"\x05\x00":
        raise OSError("socks5: no acceptable method")
    name = host.encode()
    sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
    head = recv_exact(sock, 4)
    if head[1] != 0:
        raise OSError("socks5: connect failed, reply %d" % head[1])
    skip = {1: 4, 4: 16}.get(head[3])
    if skip is None:
        skip = recv_exact(sock, 1)[0]
    recv_exact(sock, skip + 2)


def http_connect(sock, host, port):
    sock.sendall(("CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (host, port, host, port)).encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(1)
        if not chunk:
            raise OSError("proxy closed before answering CONNECT")
        reply += chunk
    if reply.split(b" ", 2)[1] != b"200":
        raise OSError("CONNECT refused: %r" % reply.split(b"\r\n")[0])


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--connect", help="ADDR: connect there instead of resolving the URL's host")
    ap.add_argument("--socks5", help="HOST:PORT of a SOCKS5 proxy (the proxy resolves the name)")
    ap.add_argument("--proxy", help="http://HOST:PORT of an HTTP CONNECT proxy")
    ap.add_argument("--max-time", type=float, default=20)
    a = ap.parse_args()
    url = urllib.parse.urlsplit(a.url)
    host, port = url.hostname, url.port or 443
    start = time.monotonic()
    if a.socks5 or a.proxy:
        hop = urllib.parse.urlsplit(a.proxy) if a.proxy else urllib.parse.urlsplit("socks5://" + a.socks5)
        sock = socket.create_connection((hop.hostname, hop.port), timeout=a.max_time)
        target = a.connect or host
        (socks5 if a.socks5 else http_connect)(sock, target, port)
    else:
        sock = socket.create_connection((a.connect or host, port), timeout=a.max_time)
    ctx = ssl.create_default_context(cafile=a.cafile)
    tls = ctx.wrap_socket(sock, server_hostname=host)
    handshake = time.monotonic() - start
    path = url.path or "/"
    tls.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rwlab-python\r\n"
                 "Connection: close\r\n\r\n" % (path, host)).encode())
    data = b""
    while True:
        chunk = tls.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    code = head.split(b" ", 2)[1].decode() if head else "000"
    print("http=%s bytes=%d tls=%.6f total=%.6f" % (code, len(body), handshake,
                                                      time.monotonic() - start))
    return 0 if code == "200" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ssl.SSLError) as e:
        print("tls_fetch: %s" % e, file=sys.stderr)
        sys.exit(1)
