// One HTTPS GET with Java's own TLS stack (JSSE), directly or through a SOCKS5 or HTTP CONNECT
// proxy: RWLAB_TLS_CLIENT=java in the lab's TLS scenarios. Each fetch is a new JVM, as a build
// tool or an IDE's first request is: its handshake runs cold (interpreted crypto), so the
// client's own time between the server's flight and its answer is far longer than OpenSSL's.
// --count N fetches N times in one JVM, each over a new connection (a warm JVM from the
// second on, as an IDE's). Prints one line per fetch like curl's -w.
import java.io.FileInputStream;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.Proxy;
import java.net.URI;
import java.net.URL;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import javax.net.ssl.HttpsURLConnection;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

public final class TlsFetch {
  private static InetSocketAddress hostPort(String s) {
    int colon = s.lastIndexOf(':');
    return new InetSocketAddress(s.substring(0, colon), Integer.parseInt(s.substring(colon + 1)));
  }

  public static void main(String[] args) throws Exception {
    String cafile = null;
    String target = null;
    int count = 1;
    Proxy proxy = Proxy.NO_PROXY;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--cafile" -> cafile = args[++i];
        case "--count" -> count = Integer.parseInt(args[++i]);
        case "--socks5" -> proxy = new Proxy(Proxy.Type.SOCKS, hostPort(args[++i]));
        case "--proxy" -> {
          URI u = URI.create(args[++i]);
          proxy = new Proxy(Proxy.Type.HTTP, new InetSocketAddress(u.getHost(), u.getPort()));
        }
        default -> target = args[i];
      }
    }
    if (cafile == null || target == null) {
      System.err.println("usage: TlsFetch --cafile CA [--count N] [--socks5 H:P | --proxy URL] URL");
      System.exit(2);
    }
    KeyStore roots = KeyStore.getInstance(KeyStore.getDefaultType());
    roots.load(null, null);
    try (InputStream in = new FileInputStream(cafile)) {
      roots.setCertificateEntry("lab", CertificateFactory.getInstance("X.509").generateCertificate(in));
    }
    TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
    tmf.init(roots);
    SSLContext ctx = SSLContext.getInstance("TLS");
    ctx.init(null, tmf.getTrustManagers(), null);
    System.setProperty("http.keepAlive", "false");

    int failures = 0;
    for (int n = 0; n < count; n++) {
      long start = System.nanoTime();
      HttpsURLConnection conn = (HttpsURLConnection) new URL(target).openConnection(proxy);
      conn.setSSLSocketFactory(ctx.getSocketFactory());
      conn.setConnectTimeout(20000);
      conn.setReadTimeout(20000);
      int status = conn.getResponseCode();
      long bytes = 0;
      try (InputStream body = status < HttpURLConnection.HTTP_BAD_REQUEST ? conn.getInputStream()
                                                                          : conn.getErrorStream()) {
        byte[] buf = new byte[65536];
        for (int k; body != null && (k = body.read(buf)) > 0;) bytes += k;
      }
      conn.disconnect();
      System.out.printf("http=%d bytes=%d total=%.6f%n", status, bytes, (System.nanoTime() - start) / 1e9);
      if (status != 200) failures++;
    }
    System.exit(failures == 0 ? 0 : 1);
  }
}
