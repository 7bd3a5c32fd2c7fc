/* The floor for any libpcap file reader: open with nanosecond timestamps, pcap_next_ex
 * every packet, touch its link header and count it. Nothing else. run_bench.sh compares
 * relaywatch's replay time against this loop's.
 *
 * Build: cc -O2 -o bare_loop bare_loop.c -lpcap
 * Usage: bare_loop FILE.pcap
 * Prints one line: packets=N wire_bytes=N captured_bytes=N first_ts=S.NNNNNNNNN
 *                  last_ts=S.NNNNNNNNN touch=N
 */
#include <inttypes.h>
#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FILE.pcap\n", argv[0]);
    return 2;
  }
  char errbuf[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline_with_tstamp_precision(argv[1], PCAP_TSTAMP_PRECISION_NANO, errbuf);
  if (p == NULL) {
    fprintf(stderr, "bare_loop: %s\n", errbuf);
    return 1;
  }
  uint64_t packets = 0, wire_bytes = 0, captured_bytes = 0, touch = 0;
  struct timeval first = {0, 0}, last = {0, 0};
  struct pcap_pkthdr* h;
  const u_char* data;
  int r;
  while ((r = pcap_next_ex(p, &h, &data)) == 1) {
    if (packets == 0) {
      first = h->ts;
    }
    last = h->ts;
    ++packets;
    wire_bytes += h->len;
    captured_bytes += h->caplen;
    /* The least a decoder reads: the Ethernet type field (or the first byte). */
    if (h->caplen >= 14) {
      touch += (uint64_t)((data[12] << 8) | data[13]);
    } else if (h->caplen > 0) {
      touch += data[0];
    }
  }
  if (r == PCAP_ERROR) {
    fprintf(stderr, "bare_loop: %s\n", pcap_geterr(p));
    pcap_close(p);
    return 1;
  }
  pcap_close(p);
  /* With NANO precision, tv_usec holds nanoseconds. */
  printf("packets=%" PRIu64 " wire_bytes=%" PRIu64 " captured_bytes=%" PRIu64
         " first_ts=%ld.%09ld last_ts=%ld.%09ld touch=%" PRIu64 "\n",
         packets, wire_bytes, captured_bytes, (long)first.tv_sec, (long)first.tv_usec,
         (long)last.tv_sec, (long)last.tv_usec, touch);
  return 0;
}
