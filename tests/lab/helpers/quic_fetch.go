// quic_fetch: one HTTP/3 GET by quic-go (Debian's golang-github-lucas-clemente-quic-go-dev),
// the lab's third QUIC implementation (RWLAB_QUIC_CLIENT=go). Trusts only the CA file given;
// connects to ADDR (ip:port) whatever the URL's host, which names the server for TLS.
//
//	quic_fetch -cacert FILE -connect IP:PORT https://NAME:PORT/PATH
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/lucas-clemente/quic-go"
	"github.com/lucas-clemente/quic-go/http3"
)

func main() {
	cacert := flag.String("cacert", "", "PEM file of the CA to trust")
	connect := flag.String("connect", "", "ip:port to dial instead of the URL's host")
	flag.Parse()
	if flag.NArg() != 1 || *cacert == "" || *connect == "" {
		fmt.Fprintln(os.Stderr, "usage: quic_fetch -cacert FILE -connect IP:PORT URL")
		os.Exit(2)
	}
	pem, err := os.ReadFile(*cacert)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	rt := &http3.RoundTripper{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (quic.EarlyConnection, error) {
			return quic.DialAddrEarlyContext(ctx, *connect, tlsCfg, cfg)
		},
	}
	defer rt.Close()
	client := &http.Client{Transport: rt, Timeout: 20 * time.Second}
	resp, err := client.Get(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Printf("http=%d bytes=%d proto=%s\n", resp.StatusCode, n, resp.Proto)
}
