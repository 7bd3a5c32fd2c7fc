#!/usr/bin/python3
"""Paramiko behind the ssh command line the lab's scenarios use (RWLAB_SSH_CLIENT): another
SSH client implementation, in Python. Takes -F CONFIG (its IdentityFile), -t/-tt, -p PORT,
-J USER@HOST (a direct-tcpip channel through the jump host), -o ProxyCommand=CMD, then
USER@HOST [COMMAND]; anything else is an error. Runs COMMAND on a pty and copies the
terminal both ways, as ssh -tt does. Debian's python3-paramiko (run by /usr/bin/python3).
"""
import os
import select
import socket
import sys
import termios
import tty

import paramiko


def die(msg):
    print("ssh_paramiko: %s" % msg, file=sys.stderr)
    sys.exit(255)


def parse(argv):
    opts = {"port": 22, "config": None, "jump": None, "proxy": None}
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        a = argv[i]
        if a == "-V":
            print("paramiko %s (ssh_paramiko.py)" % paramiko.__version__, file=sys.stderr)
            sys.exit(0)
        if a in ("-t", "-tt"):
            i += 1
            continue
        if a in ("-F", "-p", "-J", "-o") and i + 1 < len(argv):
            v = argv[i + 1]
            if a == "-F":
                opts["config"] = v
            elif a == "-p":
                opts["port"] = int(v)
            elif a == "-J":
                opts["jump"] = v
            elif v.startswith("ProxyCommand="):
                opts["proxy"] = v[len("ProxyCommand="):]
            else:
                die("unsupported option -o %s" % v)
            i += 2
            continue
        die("unsupported option %s" % a)
    if i >= len(argv):
        die("no destination")
    return opts, argv[i], " ".join(argv[i + 1:])


def key_of(config):
    if config:
        for line in open(config):
            parts = line.split()
            if len(parts) == 2 and parts[0] == "IdentityFile":
                return paramiko.Ed25519Key.from_private_key_file(parts[1])
    return None


def connect(dest, port, key, sock=None):
    user, _, host = dest.rpartition("@")
    t = paramiko.Transport(sock if sock is not None else socket.create_connection((host, port)))
    t.start_client()
    t.auth_publickey(user or "root", key)
    return t


def main():
    opts, dest, command = parse(sys.argv[1:])
    key = key_of(opts["config"])
    host = dest.rpartition("@")[2]
    sock = None
    if opts["jump"]:
        jump = connect(opts["jump"], 22, key)
        sock = jump.open_channel("direct-tcpip", (host, opts["port"]), ("127.0.0.1", 0))
    elif opts["proxy"]:
        cmd = opts["proxy"].replace("%h", host).replace("%p", str(opts["port"]))
        sock = paramiko.ProxyCommand(cmd)
    t = connect(dest, opts["port"], key, sock)
    chan = t.open_session()
    chan.get_pty(term=os.environ.get("TERM", "xterm"), width=80, height=24)
    chan.exec_command(command) if command else chan.invoke_shell()
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    if saved:
        tty.setraw(fd)
    try:
        while True:
            r, _, _ = select.select([chan, fd], [], [])
            if chan in r:
                data = chan.recv(4096)
                if not data:
                    break
                os.write(sys.stdout.fileno(), data)
            if fd in r:
                data = os.read(fd, 1024)
                if not data:
                    break
                chan.sendall(data)
    finally:
        if saved:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
    return chan.recv_exit_status() if chan.exit_status_ready() else 0


if __name__ == "__main__":
    sys.exit(main())
