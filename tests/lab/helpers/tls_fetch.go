// One HTTPS GET with Go's crypto/tls and net/http, directly or through a SOCKS5 or HTTP
// CONNECT proxy (which resolves the name): RWLAB_TLS_CLIENT=go in the lab's TLS scenarios (Go's own TLS stack, unlike
// curl's OpenSSL or wget's GnuTLS). Prints one line like curl's -w.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	cafile := flag.String("cafile", "", "CA certificate (PEM)")
	socks := flag.String("socks5", "", "HOST:PORT of a SOCKS5 proxy")
	proxy := flag.String("proxy", "", "http://HOST:PORT of an HTTP CONNECT proxy")
	maxTime := flag.Duration("max-time", 20*time.Second, "give up after this long")
	flag.Parse()
	if flag.NArg() != 1 || *cafile == "" {
		fmt.Fprintln(os.Stderr, "usage: tls_fetch --cafile CA [--socks5 H:P | --proxy URL] URL")
		os.Exit(2)
	}
	pem, err := os.ReadFile(*cafile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tls_fetch:", err)
		os.Exit(1)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}
	switch {
	case *socks != "":
		tr.Proxy = http.ProxyURL(&url.URL{Scheme: "socks5", Host: *socks})
	case *proxy != "":
		u, err := url.Parse(*proxy)
		if err != nil {
			fmt.Fprintln(os.Stderr, "tls_fetch:", err)
			os.Exit(2)
		}
		tr.Proxy = http.ProxyURL(u)
	}
	client := &http.Client{Transport: tr, Timeout: *maxTime}
	req, err := http.NewRequest("GET", flag.Arg(0), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tls_fetch:", err)
		os.Exit(2)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tls_fetch:", err)
		os.Exit(1)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Printf("http=%d bytes=%d total=%.6f\n", resp.StatusCode, n, time.Since(start).Seconds())
	if resp.StatusCode != 200 {
		os.Exit(1)
	}
}
