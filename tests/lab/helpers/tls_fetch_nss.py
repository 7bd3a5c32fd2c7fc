#!/usr/bin/python3
"""One HTTPS GET with NSS, Firefox's TLS library: RWLAB_TLS_CLIENT=nss in the lab's TLS
scenarios. Debian's libcurl3-nss is libcurl built on NSS; this drives it through ctypes, so the
transfer and proxy logic is curl's and only the TLS stack differs from the default client.
Takes --cafile CA [--connect ADDR] [--socks5 H:P | --proxy URL] URL; prints one line like
curl's -w. Debian's python3 and libcurl3-nss (with nss-plugin-pem, which reads the PEM CA).
"""
import ctypes
import sys
import urllib.parse

CURLOPT_URL = 10002
CURLOPT_PROXY = 10004
CURLOPT_TIMEOUT = 13
CURLOPT_CAINFO = 10065
CURLOPT_NOSIGNAL = 99
CURLOPT_WRITEFUNCTION = 20011
CURLOPT_RESOLVE = 10203
CURLINFO_RESPONSE_CODE = 0x200002
CURLINFO_TOTAL_TIME = 0x300003
CURLINFO_SIZE_DOWNLOAD_T = 0x600008

WRITE_CB = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                            ctypes.c_void_p)


def die(msg, code=2):
    print("tls_fetch_nss: %s" % msg, file=sys.stderr)
    sys.exit(code)


def main(argv):
    opts = {"cafile": None, "connect": None, "socks5": None, "proxy": None}
    url = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--") and a[2:] in opts and i + 1 < len(argv):
            opts[a[2:]] = argv[i + 1]
            i += 2
        elif url is None and not a.startswith("-"):
            url = a
            i += 1
        else:
            die("unknown argument %s" % a)
    if url is None or opts["cafile"] is None:
        die("usage: tls_fetch_nss.py --cafile CA [--connect ADDR] [--socks5 H:P | --proxy URL] URL")

    try:
        lib = ctypes.CDLL("libcurl-nss.so.4")
    except OSError as e:
        die("%s: apt-get install libcurl3-nss" % e, 3)
    lib.curl_version.restype = ctypes.c_char_p
    if b"NSS" not in lib.curl_version():
        die("libcurl-nss.so.4 is not built on NSS: %s" % lib.curl_version().decode(), 3)
    lib.curl_easy_init.restype = ctypes.c_void_p
    lib.curl_easy_setopt.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.curl_easy_perform.argtypes = [ctypes.c_void_p]
    lib.curl_easy_getinfo.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.curl_easy_strerror.restype = ctypes.c_char_p
    lib.curl_slist_append.restype = ctypes.c_void_p
    lib.curl_slist_append.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

    h = lib.curl_easy_init()
    if not h:
        die("curl_easy_init failed", 1)
    keep = []  # buffers and the callback must outlive the transfer

    def setopt(opt, value):
        if isinstance(value, str):
            value = ctypes.c_char_p(value.encode())
            keep.append(value)
        rc = lib.curl_easy_setopt(h, opt, ctypes.cast(value, ctypes.c_void_p)
                                  if not isinstance(value, int) else ctypes.c_void_p(value))
        if rc != 0:
            die("setopt %d: %s" % (opt, lib.curl_easy_strerror(rc).decode()))

    received = [0]

    def on_data(_ptr, size, nmemb, _user):
        received[0] += size * nmemb
        return size * nmemb

    cb = WRITE_CB(on_data)
    keep.append(cb)
    setopt(CURLOPT_URL, url)
    setopt(CURLOPT_CAINFO, opts["cafile"])
    setopt(CURLOPT_TIMEOUT, 20)
    setopt(CURLOPT_NOSIGNAL, 1)
    setopt(CURLOPT_WRITEFUNCTION, cb)
    if opts["socks5"]:
        setopt(CURLOPT_PROXY, "socks5://" + opts["socks5"])
    elif opts["proxy"]:
        setopt(CURLOPT_PROXY, opts["proxy"])
    if opts["connect"]:  # the URL's name at ADDR, as curl's --resolve
        parts = urllib.parse.urlsplit(url)
        entry = "%s:%d:%s" % (parts.hostname, parts.port or 443, opts["connect"])
        slist = lib.curl_slist_append(None, entry.encode())
        setopt(CURLOPT_RESOLVE, slist)

    rc = lib.curl_easy_perform(h)
    if rc != 0:
        die(lib.curl_easy_strerror(rc).decode(), 1)
    code = ctypes.c_long()
    total = ctypes.c_double()
    size = ctypes.c_int64()
    lib.curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, ctypes.byref(code))
    lib.curl_easy_getinfo(h, CURLINFO_TOTAL_TIME, ctypes.byref(total))
    lib.curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, ctypes.byref(size))
    print("http=%d bytes=%d total=%.6f" % (code.value, size.value or received[0], total.value))
    return 0 if code.value == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
